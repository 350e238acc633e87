// Tokenizer::load: picks the loader from the path (a .gguf file, a tokenizer.json, an HF folder).
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "model/format/gguf_file.h"
#include "tokenizer/tokenizer.h"

namespace fs {
namespace {

Result<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return not_found("cannot open tokenizer file {}", path);
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return data_loss("error reading {}", path);
  return ss.str();
}

// tokenizer_config.json's "bos_token"/"eos_token": a string or {"content": ...}.
std::string config_token(const nlohmann::json& config, const char* key) {
  auto it = config.find(key);
  if (it == config.end()) return "";
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) {
    return (*it)["content"].get<std::string>();
  }
  return "";
}

}  // namespace

Result<std::unique_ptr<Tokenizer>> Tokenizer::load(const std::string& path) {
  namespace stdfs = std::filesystem;
  std::error_code ec;
  if (stdfs::is_directory(path, ec)) {
    const std::string json_path = (stdfs::path(path) / "tokenizer.json").string();
    FS_ASSIGN_OR_RETURN(std::string text, read_file(json_path));
    FS_ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tok, from_hf_json(text, json_path));
    const std::string config_path = (stdfs::path(path) / "tokenizer_config.json").string();
    if (stdfs::exists(config_path, ec)) {
      Result<std::string> config_text = read_file(config_path);
      if (config_text.is_ok()) {
        auto config = nlohmann::json::parse(*config_text, nullptr, /*allow_exceptions=*/false);
        if (config.is_object()) {
          const std::string bos = config_token(config, "bos_token");
          const std::string eos = config_token(config, "eos_token");
          if (!bos.empty() && tok->token_to_id(bos) >= 0) tok->spec_.bos_id = tok->token_to_id(bos);
          if (!eos.empty() && tok->token_to_id(eos) >= 0) tok->spec_.eos_id = tok->token_to_id(eos);
        }
      }
    }
    return tok;
  }
  if (!stdfs::exists(path, ec)) return not_found("tokenizer file {} does not exist", path);
  if (path.size() >= 5 && path.compare(path.size() - 5, 5, ".gguf") == 0) {
    FS_ASSIGN_OR_RETURN(std::shared_ptr<const GgufFile> gguf, GgufFile::open(path));
    return from_gguf(*gguf);
  }
  FS_ASSIGN_OR_RETURN(std::string text, read_file(path));
  return from_hf_json(text, path);
}

}  // namespace fs
