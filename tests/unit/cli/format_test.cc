#include <catch2/catch.hpp>

#include <yaml-cpp/yaml.h>

#include "plexus/cli/format.h"

using namespace plexus::cli;

TEST_CASE("tables align columns and trim trailing spaces", "[unit][cli]") {
  auto t = renderTable({"ID", "POD"}, {{"1", "default/web"}, {"12", "x"}});
  CHECK(t == "ID   POD\n1    default/web\n12   x\n");
}

TEST_CASE("output names and numeric cells", "[unit][cli]") {
  auto o = parseOutput("json");
  REQUIRE(o.ok());
  CHECK(o->kind == Output::kJson);
  o = parseOutput("table");
  REQUIRE(o.ok());
  CHECK(o->kind == Output::kTable);
  CHECK(o->text_form == "table");
  o = parseOutput("");
  REQUIRE(o.ok());
  CHECK(o->kind == Output::kTable);
  o = parseOutput("yaml");
  REQUIRE(o.ok());
  CHECK(o->kind == Output::kYaml);
  o = parseOutput("jsonpath={.a}");
  REQUIRE(o.ok());
  CHECK(o->kind == Output::kJsonPath);
  CHECK(o->jsonpath == "{.a}");
  o = parseOutput("jsonpath='{.a}'");  // quotes a shell would have removed
  REQUIRE(o.ok());
  CHECK(o->jsonpath == "{.a}");
  // A command's own text forms; the first is the default.
  o = parseOutput("dict", {"compact", "dict"});
  REQUIRE(o.ok());
  CHECK(o->kind == Output::kTable);
  CHECK(o->text_form == "dict");
  CHECK(parseOutput("", {"compact", "dict"})->text_form == "compact");
  CHECK(cellJson("42") == 42);
  CHECK(cellJson("10.0.0.1") == "10.0.0.1");
  CHECK(cellJson("") == "");
}

TEST_CASE("an unknown -o names every accepted value", "[unit][cli]") {
  auto o = parseOutput("xml");
  REQUIRE_FALSE(o.ok());
  CHECK(o.error().message == "unknown output format \"xml\": use table, json, yaml or jsonpath=EXPR");
  o = parseOutput("table", {"compact", "dict"});
  REQUIRE_FALSE(o.ok());
  CHECK(o.error().message == "unknown output format \"table\": use compact, dict, json, yaml or jsonpath=EXPR");
  CHECK_FALSE(parseOutput("jsonpath").ok());
  CHECK_FALSE(parseOutput("jsonpath=").ok());
  auto bad = parseOutput("jsonpath={.a");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().message.find("'{' without '}'") != std::string::npos);
}

TEST_CASE("yaml renders a JSON document in block style and quotes strings that would read as other types",
          "[unit][cli]") {
  auto doc = nlohmann::json::parse(R"({"name": "web", "port": 8080, "ratio": 0.5, "ok": true, "none": null,
    "version": "1.10", "flag": "true", "empty": "", "labels": ["k8s:app=web", "no"], "nested": {"a": {"b": 1}},
    "list": [], "obj": {}, "items": [{"id": 1}, {"id": 2}]})");
  std::string y = toYaml(doc);
  CHECK(y ==
        "empty: \"\"\n"
        "flag: \"true\"\n"
        "items:\n"
        "  - id: 1\n"
        "  - id: 2\n"
        "labels:\n"
        "  - k8s:app=web\n"
        "  - \"no\"\n"
        "list: []\n"
        "name: web\n"
        "nested:\n"
        "  a:\n"
        "    b: 1\n"
        "none: ~\n"
        "obj: {}\n"
        "ok: true\n"
        "port: 8080\n"
        "ratio: 0.5\n"
        "version: \"1.10\"\n");
  // What it says reads back as the same document.
  auto back = YAML::Load(y);
  CHECK(back["version"].as<std::string>() == "1.10");
  CHECK(back["port"].as<int>() == 8080);
  CHECK(back["items"][1]["id"].as<int>() == 2);
  CHECK(toYaml(nlohmann::json::array()) == "[]\n");
}

TEST_CASE("jsonpath: kubectl's subset over a document", "[unit][cli]") {
  auto doc = nlohmann::json::parse(R"({"kind": "x", "meta": {"name": "web", "dash-key": "d"},
    "items": [{"name": "a", "id": 1, "tags": ["t1", "t2"], "state": "READY"},
              {"name": "b", "id": 2, "tags": [], "state": "NOT_READY"},
              {"name": "c", "id": 3, "state": "READY"}]})");
  struct Case {
    const char* expr;
    const char* want;
  };
  const Case cases[] = {
      {"{.kind}", "x"},
      {"{.meta.name}", "web"},
      {"{.meta['dash-key']}", "d"},
      {"{.meta.dash-key}", "d"},
      {"{.items[0].name}", "a"},
      {"{.items[-1].name}", "c"},
      {"{.items[*].name}", "a b c"},
      {"{.items[1:].id}", "2 3"},
      {"{.items[:2].id}", "1 2"},
      {"{.items[?(@.state==\"READY\")].name}", "a c"},
      {"{.items[?(@.id!=2)].id}", "1 3"},
      {"{.items[?(@.tags)].name}", "a b"},
      {"{.items[0].tags}", "[\"t1\",\"t2\"]"},
      {"{.items[0]}", "{\"id\":1,\"name\":\"a\",\"state\":\"READY\",\"tags\":[\"t1\",\"t2\"]}"},
      {"{.meta.*}", "d web"},
      {"{.missing}", ""},
      {"{.items[7].name}", ""},
      {"name={.meta.name}!", "name=web!"},
      {"{range .items[*]}{.name}={.id}{\"\\n\"}{end}", "a=1\nb=2\nc=3\n"},
      {"{range .items[*]}{.name}:{range .tags[*]}[{.}]{end};{end}", "a:[t1][t2];b:;c:;"},
      {"{range .items[*]}{$.kind}{end}", "xxx"},
      {"{$.meta.name}", "web"},
  };
  for (const auto& c : cases) {
    INFO(c.expr);
    auto got = evalJsonPath(doc, c.expr);
    REQUIRE(got.ok());
    CHECK(*got == c.want);
  }
  // A list document reads as kubectl's List: {.items[*]...}.
  auto list = nlohmann::json::parse(R"([{"id": 4}, {"id": 5}])");
  CHECK(*evalJsonPath(list, "{.items[*].id}") == "4 5");
  CHECK(*evalJsonPath(list, "{.items[1].id}") == "5");
}

TEST_CASE("jsonpath: a malformed template is an error naming the problem", "[unit][cli]") {
  struct Case {
    const char* expr;
    const char* says;
  };
  const Case cases[] = {
      {"{.a", "'{' without '}'"},
      {".a}", "'}' without '{'"},
      {"{}", "empty action"},
      {"{.items[x]}", "bad index [x]"},
      {"{.items[0}", "'[' without ']'"},
      {"{.a..b}", "recursive descent"},
      {"{range .items[*]}{.a}", "without {end}"},
      {"{end}", "{end} without {range"},
      {"{.items[?(@.a>1)]}", "filter operator"},
      {"{.items[?(@.a==[1])]}", "filter value"},
      {"{.items[?(.a==1)]}", "a filter starts with @"},
      {"{\"abc}", "unterminated"},
      {"{.a b}", "unexpected"},
      {"{.a{.b}}", "'{' inside an action"},
  };
  for (const auto& c : cases) {
    INFO(c.expr);
    auto got = evalJsonPath(nlohmann::json::object(), c.expr);
    REQUIRE_FALSE(got.ok());
    CHECK(got.error().code == plexus::ErrorCode::kInvalidArgument);
    CHECK(got.error().message.find(c.says) != std::string::npos);
    CHECK(got.error().message.find("jsonpath") == 0);
  }
}

TEST_CASE("renderDocument: json, yaml and jsonpath of one document end with a newline", "[unit][cli]") {
  nlohmann::json doc = {{"a", 1}};
  CHECK(*renderDocument(doc, *parseOutput("json")) == "{\n  \"a\": 1\n}\n");
  CHECK(*renderDocument(doc, *parseOutput("yaml")) == "a: 1\n");
  CHECK(*renderDocument(doc, *parseOutput("jsonpath={.a}")) == "1\n");
  CHECK(*renderDocument(doc, *parseOutput("jsonpath={.b}")) == "");
}
