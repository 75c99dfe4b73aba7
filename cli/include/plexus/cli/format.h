#pragma once
// Output for the plexus CLI (pure): aligned tables, and JSON from protobuf messages with the field names the
// API defines (snake_case) and zero values kept, so scripts can rely on every field being present.

#include <string>
#include <vector>

#include <google/protobuf/message.h>
#include <nlohmann/json.hpp>

namespace plexus::cli {

enum class Output { kTable, kJson };
// Accepts "table" and "json"; anything else is an error the caller reports.
bool parseOutput(const std::string& text, Output* out);

std::string renderTable(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows);

nlohmann::json toJson(const google::protobuf::Message& m);

// A cell that is all digits becomes a JSON number; everything else stays a string.
nlohmann::json cellJson(const std::string& cell);

}  // namespace plexus::cli
