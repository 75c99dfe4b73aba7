#include "plexus/cli/format.h"

#include <algorithm>

#include <google/protobuf/util/json_util.h>

namespace plexus::cli {

bool parseOutput(const std::string& text, Output* out) {
  if (text == "table" || text == "compact" || text.empty()) {
    *out = Output::kTable;
    return true;
  }
  if (text == "json") {
    *out = Output::kJson;
    return true;
  }
  return false;
}

std::string renderTable(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width(header.size(), 0);
  for (size_t i = 0; i < header.size(); ++i) {
    width[i] = header[i].size();
  }
  for (const auto& r : rows) {
    for (size_t i = 0; i < r.size() && i < width.size(); ++i) {
      width[i] = std::max(width[i], r[i].size());
    }
  }
  auto line = [&](const std::vector<std::string>& cells) {
    std::string out;
    for (size_t i = 0; i < width.size(); ++i) {
      std::string c = i < cells.size() ? cells[i] : "";
      out += c;
      if (i + 1 < width.size()) {
        out += std::string(width[i] - c.size() + 3, ' ');
      }
    }
    while (!out.empty() && out.back() == ' ') {
      out.pop_back();
    }
    return out + "\n";
  };
  std::string out = line(header);
  for (const auto& r : rows) {
    out += line(r);
  }
  return out;
}

nlohmann::json toJson(const google::protobuf::Message& m) {
  std::string text;
  google::protobuf::util::JsonPrintOptions opts;
  opts.always_print_primitive_fields = true;
  opts.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(m, &text, opts);
  return nlohmann::json::parse(text, nullptr, false);
}

nlohmann::json cellJson(const std::string& cell) {
  if (!cell.empty() && cell.size() < 19 && std::all_of(cell.begin(), cell.end(), ::isdigit)) {
    return std::stoull(cell);
  }
  return cell;
}

}  // namespace plexus::cli
