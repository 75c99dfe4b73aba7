#pragma once
// Output for the plexus CLI (pure): aligned tables, and JSON from protobuf messages with the field names the
// API defines (snake_case) and zero values kept, so scripts can rely on every field being present.
//
// Every command that prints JSON also prints it as YAML (-o yaml) or through a kubectl-style JSONPath template
// (-o jsonpath=EXPR): the command builds one JSON document and renderDocument() turns it into the chosen form.

#include <string>
#include <vector>

#include <google/protobuf/message.h>
#include <nlohmann/json.hpp>

#include "plexus/common/result.h"

namespace plexus::cli {

enum class Output { kTable, kJson, kYaml, kJsonPath };

struct OutputFormat {
  Output kind = Output::kTable;
  std::string text_form = "table";  // the command's own text form when kind is kTable ("table", "compact", ...)
  std::string jsonpath;             // the template, for kJsonPath

  bool structured() const { return kind != Output::kTable; }
};

// The -o values every command with JSON output takes besides its text forms.
inline const std::vector<std::string> kStructuredOutputs = {"json", "yaml", "jsonpath=EXPR"};

// Parses -o: one of `text_forms` (the first is the default, used for ""), json, yaml, or jsonpath=EXPR (also
// jsonpath='EXPR' as a shell leaves it). An unknown value is InvalidArgument naming every accepted value; a
// malformed template is InvalidArgument saying where it is wrong.
Result<OutputFormat> parseOutput(const std::string& text, const std::vector<std::string>& text_forms = {"table"});

// The accepted -o values as one line: "table, json, yaml or jsonpath=EXPR".
std::string outputChoices(const std::vector<std::string>& text_forms);

// `doc` as the structured form asks: JSON (2-space indent), YAML (block style; strings that would read back as
// another type are quoted), or the JSONPath template's text. Every result ends with a newline unless empty.
Result<std::string> renderDocument(const nlohmann::json& doc, const OutputFormat& format);

// YAML for a JSON document (block style, keys in the document's order).
std::string toYaml(const nlohmann::json& doc);

// A kubectl-style JSONPath template over `doc` (see docs/cli.md, "Output formats"):
//   text outside braces is printed as written; {"\n"} and {"\t"} print literals;
//   {.a.b}, {.a['b-c']}, {.items[0]}, {.items[-1]}, {.items[1:3]}, {.items[*].name}, {.items[?(@.x=="y")].name}
//   (filters compare with == or != against a quoted string, a number, true, false or null);
//   {range .items[*]}...{end} repeats its body for each result, relative to it ({.name} inside is the item's);
//   {$} or {.} is the whole document. A list document (a JSON array) is seen as {"items": [...]}, as kubectl's
//   List, so {.items[*].name} works on `plexus endpoint list`.
// Several results of one expression are separated by spaces; strings print raw, other values as compact JSON;
// a missing key prints nothing (kubectl's default). Not supported: recursive descent (..), unions ([a,b]),
// functions. A malformed template is InvalidArgument naming the problem and its position.
Result<std::string> evalJsonPath(const nlohmann::json& doc, const std::string& expr);

std::string renderTable(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows);

nlohmann::json toJson(const google::protobuf::Message& m);

// A cell that is all digits becomes a JSON number; everything else stays a string.
nlohmann::json cellJson(const std::string& cell);

}  // namespace plexus::cli
