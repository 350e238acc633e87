// Helpers for the format tests: temp files and a tiny GGUF writer.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace fs::testing_util {

// A fresh directory under the gtest temp dir, unique per test.
inline std::string make_temp_dir() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string dir = ::testing::TempDir() + "fs_format_" + std::to_string(::getpid()) + "_" +
                    info->test_suite_name() + "_" + info->name();
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

inline void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Little-endian byte sink.
struct Bytes {
  std::string s;
  template <typename T>
  Bytes& put(T v) {
    char b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));
    s.append(b, sizeof(T));
    return *this;
  }
  Bytes& str(const std::string& v) {
    put<uint64_t>(v.size());
    s += v;
    return *this;
  }
};

// Builds GGUF files: metadata entries are raw (key, type, value bytes) so tests can corrupt
// anything.
class GgufBuilder {
 public:
  struct Tensor {
    std::string name;
    std::vector<uint64_t> ne;  // ggml order: ne[0] = row length
    uint32_t type;
    std::string data;
    int64_t offset_override = -1;  // write this offset instead of the computed one
  };

  uint32_t version = 3;
  uint64_t alignment = 32;
  int64_t tensor_count_override = -1;
  int64_t kv_count_override = -1;

  // Raw KV: key, type id, value bytes.
  GgufBuilder& kv(const std::string& key, uint32_t type, const std::string& value_bytes) {
    Bytes b;
    b.str(key).put<uint32_t>(type);
    kvs_.push_back(b.s + value_bytes);
    return *this;
  }
  GgufBuilder& kv_u32(const std::string& key, uint32_t v) { return kv(key, 4, Bytes().put(v).s); }
  GgufBuilder& kv_f32(const std::string& key, float v) { return kv(key, 6, Bytes().put(v).s); }
  GgufBuilder& kv_str(const std::string& key, const std::string& v) {
    return kv(key, 8, Bytes().str(v).s);
  }
  GgufBuilder& kv_str_array(const std::string& key, const std::vector<std::string>& v) {
    Bytes b;
    b.put<uint32_t>(8).put<uint64_t>(v.size());
    for (const auto& e : v) b.str(e);
    return kv(key, 9, b.s);
  }
  GgufBuilder& tensor(Tensor t) {
    tensors_.push_back(std::move(t));
    return *this;
  }

  // The file bytes; no padding after the last tensor, so every strict prefix is truncated.
  std::string build() const {
    Bytes b;
    b.put<uint32_t>(0x46554747).put<uint32_t>(version);
    b.put<uint64_t>(tensor_count_override >= 0 ? tensor_count_override : tensors_.size());
    b.put<uint64_t>(kv_count_override >= 0 ? kv_count_override : kvs_.size());
    for (const auto& kv : kvs_) b.s += kv;
    uint64_t offset = 0;
    std::vector<uint64_t> offsets;
    for (const auto& t : tensors_) {
      offset = (offset + alignment - 1) / alignment * alignment;
      offsets.push_back(offset);
      b.str(t.name).put<uint32_t>(t.ne.size());
      for (uint64_t n : t.ne) b.put<uint64_t>(n);
      b.put<uint32_t>(t.type);
      b.put<uint64_t>(t.offset_override >= 0 ? t.offset_override : offset);
      offset += t.data.size();
    }
    if (!tensors_.empty()) b.s.resize((b.s.size() + alignment - 1) / alignment * alignment, '\0');
    const size_t data_start = b.s.size();
    for (size_t i = 0; i < tensors_.size(); ++i) {
      b.s.resize(data_start + offsets[i], '\0');
      b.s += tensors_[i].data;
    }
    return b.s;
  }

 private:
  std::vector<std::string> kvs_;
  std::vector<Tensor> tensors_;
};

}  // namespace fs::testing_util
