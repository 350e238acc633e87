#include "core/workload_file.h"

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

namespace fs {
namespace {

bool blank(const std::string& line) { return line.empty() || line == "\r"; }

}  // namespace

Result<std::vector<TextRow>> read_text_rows(const std::string& path, std::string_view what) {
  std::ifstream in(path);
  if (!in) return not_found("{} {} not found", what, path);
  std::vector<TextRow> rows;
  std::string line;
  int64_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (blank(line)) continue;
    auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object() || !j.contains("prompt") || !j["prompt"].is_string()) {
      return data_loss("{}:{}: not a {{\"prompt\", \"output\"}} object", path, line_no);
    }
    TextRow r;
    r.prompt = j["prompt"].get<std::string>();
    if (j.contains("output") && j["output"].is_string()) r.output = j["output"].get<std::string>();
    rows.push_back(std::move(r));
  }
  if (rows.empty()) return data_loss("{} {}: no records", what, path);
  return rows;
}

Result<std::vector<LengthRow>> read_length_rows(const std::string& path, std::string_view what) {
  std::ifstream in(path);
  if (!in) return not_found("{} {} not found", what, path);
  std::string line;
  if (!std::getline(in, line)) return data_loss("{} {}: empty", what, path);
  int prompt_col = -1, output_col = -1, col = 0;
  std::stringstream header(line);
  for (std::string name; std::getline(header, name, ','); ++col) {
    while (!name.empty() && (name.back() == '\r' || name.back() == ' ')) name.pop_back();
    if (name == "prompt_tokens") prompt_col = col;
    if (name == "output_tokens") output_col = col;
  }
  if (prompt_col < 0 || output_col < 0) {
    return data_loss("{} {}: header lacks prompt_tokens,output_tokens", what, path);
  }
  std::vector<LengthRow> rows;
  int64_t line_no = 1;
  while (std::getline(in, line)) {
    ++line_no;
    if (blank(line)) continue;
    std::stringstream ss(line);
    LengthRow r;
    int c = 0;
    for (std::string field; std::getline(ss, field, ','); ++c) {
      if (c == prompt_col) r.prompt_tokens = std::atoi(field.c_str());
      if (c == output_col) r.output_tokens = std::atoi(field.c_str());
    }
    if (c <= std::max(prompt_col, output_col)) return data_loss("{}:{}: short row", path, line_no);
    rows.push_back(r);
  }
  if (rows.empty()) return data_loss("{} {}: no records", what, path);
  return rows;
}

}  // namespace fs
