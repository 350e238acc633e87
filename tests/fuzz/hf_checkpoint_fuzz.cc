// Fuzzes a Hugging Face checkpoint folder's JSON files: byte 0 picks whether the input is the
// folder's config.json (then also parsed by ModelConfig::from_hf_config) or its
// model.safetensors.index.json; the other file and the three shards are those of the
// tiny-llama3-bf16-sharded fixture (linked into a scratch folder). Checks: no crash or sanitizer
// report; an opened checkpoint finds every tensor its index names; a config that parses and passes
// ModelConfig::validate (as the loader requires) has positive dimensions that divide as the forward
// pass assumes.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <string>

#include "core/check.h"
#include "model/format/hf_checkpoint.h"
#include "model/model_config.h"

namespace {

namespace stdfs = std::filesystem;

const std::string& scratch_dir() {
  static const std::string dir = [] {
    const stdfs::path fixture =
        stdfs::path(FASTSERVE_FIXTURES_DIR) / "models" / "tiny-llama3-bf16-sharded";
    const stdfs::path d =
        stdfs::temp_directory_path() / ("fs_hf_fuzz_" + std::to_string(::getpid()));
    stdfs::remove_all(d);
    stdfs::create_directories(d);
    for (const auto& entry : stdfs::directory_iterator(fixture)) {
      if (entry.path().extension() == ".safetensors") {
        stdfs::create_symlink(entry.path(), d / entry.path().filename());
      }
    }
    return d.string();
  }();
  return dir;
}

void write(const stdfs::path& path, const char* data, size_t size) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data, static_cast<std::streamsize>(size));
}

// The fixture's own file, read once and written with ofstream (std::filesystem::copy_file fails
// with EINTR when libFuzzer's -max_total_time alarm lands inside its sendfile).
void copy_fixture(const char* name, const stdfs::path& to) {
  static std::map<std::string, std::string> cache;
  std::string& bytes = cache[name];
  if (bytes.empty()) {
    std::ifstream in(stdfs::path(FASTSERVE_FIXTURES_DIR) / "models" / "tiny-llama3-bf16-sharded" / name,
                     std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    FS_CHECK(!bytes.empty(), "fixture {} missing", name);
  }
  write(to, bytes.data(), bytes.size());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const stdfs::path dir = scratch_dir();
  const bool fuzz_index = (data[0] & 1) != 0;
  const char* body = reinterpret_cast<const char*>(data) + 1;
  if (fuzz_index) {
    copy_fixture("config.json", dir / "config.json");
    write(dir / "model.safetensors.index.json", body, size - 1);
  } else {
    write(dir / "config.json", body, size - 1);
    copy_fixture("model.safetensors.index.json", dir / "model.safetensors.index.json");
  }
  auto ckpt = fs::HfCheckpoint::open(dir.string());
  if (!ckpt.is_ok()) return 0;
  for (const auto& shard : (*ckpt)->shards()) {
    for (const auto& t : shard->tensors()) {
      FS_CHECK((*ckpt)->find_tensor(t.name) != nullptr, "tensor '{}' not found", t.name);
    }
  }
  auto config = fs::ModelConfig::from_hf_config((*ckpt)->config(), (*ckpt)->config_path());
  // from_hf_config parses; the loader then calls validate(), which is what must hold the invariants.
  if (!config.is_ok() || !config->validate().is_ok()) return 0;
  const fs::ModelConfig& c = *config;
  FS_CHECK(c.vocab_size > 0 && c.hidden_size > 0 && c.intermediate_size > 0 && c.num_layers > 0 &&
               c.head_dim > 0 && c.max_position_embeddings > 0,
           "accepted non-positive dimensions: {}", c.to_string());
  FS_CHECK(c.num_heads > 0 && c.num_kv_heads > 0 && c.num_heads % c.num_kv_heads == 0,
           "accepted {} heads over {} KV heads", c.num_heads, c.num_kv_heads);
  (void)c.to_string();
  return 0;
}
