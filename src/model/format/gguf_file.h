// GGUF v3 reader (the llama.cpp model file format): header, typed metadata, tensor infos, mmap'd
// data. Every offset and length read from the file is bounds-checked; a bad file gives a Status
// naming the file and the problem, never a crash or an out-of-bounds read. Immutable after open():
// thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/dtype.h"
#include "core/status.h"
#include "model/format/mapped_file.h"

namespace fs {

// One metadata value. Arrays hold one element type (GGUF forbids mixed arrays).
struct GgufValue;
using GgufArray = std::vector<GgufValue>;
struct GgufValue {
  std::variant<uint64_t, int64_t, double, bool, std::string, GgufArray> v;
  // Typed views; nullopt when the stored type does not convert (integers convert between each other
  // when in range, floats accept integers).
  std::optional<int64_t> as_int() const;
  std::optional<double> as_float() const;
  std::optional<bool> as_bool() const;
  const std::string* as_string() const;
  const GgufArray* as_array() const;
};

struct GgufTensorInfo {
  std::string name;
  DType dtype;
  // PyTorch order, outermost first: a ggml tensor with ne = [cols, rows] has shape {rows, cols}.
  std::vector<int64_t> shape;
  // From the start of the data section (already checked to lie inside the file).
  uint64_t offset_bytes;
  uint64_t nbytes;
  const uint8_t* data;  // points into the mapping; valid while the GgufFile lives
};

class GgufFile {
 public:
  // Maps the file read-only and parses it. Errors (kNotFound, kDataLoss, kUnimplemented) name the
  // path.
  static Result<std::shared_ptr<const GgufFile>> open(const std::string& path);
  ~GgufFile();

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  const std::map<std::string, GgufValue, std::less<>>& metadata() const { return metadata_; }
  const GgufValue* find(std::string_view key) const;  // nullptr when absent
  // Typed getters; a missing key or a wrong type gives a Status naming the file and the key.
  Result<int64_t> get_int(std::string_view key) const;
  Result<double> get_float(std::string_view key) const;
  Result<std::string> get_string(std::string_view key) const;
  // Array of strings / numbers (tokenizer vocab, scores, token types, merges).
  Result<std::vector<std::string>> get_string_array(std::string_view key) const;
  Result<std::vector<double>> get_float_array(std::string_view key) const;
  Result<std::vector<int64_t>> get_int_array(std::string_view key) const;

  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* find_tensor(std::string_view name) const;  // nullptr when absent

  uint64_t file_bytes() const { return map_bytes_; }
  uint64_t alignment() const { return alignment_; }      // general.alignment, default 32
  uint64_t data_offset() const { return data_offset_; }  // start of the data section in the file
  // Asks the kernel to read the data section ahead (madvise WILLNEED); a hint, never fails.
  void advise_willneed() const;
  // MappedFile::read_in of the tensor data; progress(bytes read).
  void read_in(const std::function<void(uint64_t)>& progress) const;

 private:
  GgufFile() = default;
  std::string path_;
  uint32_t version_ = 0;
  std::map<std::string, GgufValue, std::less<>> metadata_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t, std::less<>> tensor_index_;
  const uint8_t* map_ = nullptr;
  size_t map_bytes_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::unique_ptr<MappedFile> file_;  // owns the mapping that map_ views
};

}  // namespace fs
