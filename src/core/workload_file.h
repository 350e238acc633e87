// Readers for the benchmark workload files (../shared/datasets, bench/data) shared by the serving
// benchmark client (loadgen/dataset) and the simulator (sim/trace): JSONL of {"prompt", "output"}
// texts and CSV with prompt_tokens,output_tokens columns. Blank lines are skipped; a file with no
// rows, a malformed row or a missing column is kDataLoss naming the file (and line); a missing file
// is kNotFound. `what` names the kind of file in messages ("dataset", "trace").
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace fs {

struct TextRow {
  std::string prompt;
  std::string output;  // empty when the row has none
};

struct LengthRow {
  int32_t prompt_tokens = 0;
  int32_t output_tokens = 0;
};

Result<std::vector<TextRow>> read_text_rows(const std::string& path, std::string_view what);
Result<std::vector<LengthRow>> read_length_rows(const std::string& path, std::string_view what);

}  // namespace fs
