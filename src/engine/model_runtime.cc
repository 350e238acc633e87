#include "engine/model_runtime.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace fs {
namespace {

void add_unique(std::vector<int32_t>& ids, int64_t id) {
  if (id >= 0 && std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(static_cast<int32_t>(id));
}

// The chat template source of an HF folder: tokenizer_config.json's "chat_template" (a string, or a
// list of {name, template} where "default" wins), else chat_template.jinja.
std::optional<std::string> hf_chat_template(const std::string& folder) {
  namespace stdfs = std::filesystem;
  const stdfs::path jinja = stdfs::path(folder) / "chat_template.jinja";
  if (stdfs::exists(jinja)) {
    std::ifstream in(jinja);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  const stdfs::path config = stdfs::path(folder) / "tokenizer_config.json";
  if (!stdfs::exists(config)) return std::nullopt;
  std::ifstream in(config);
  const nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("chat_template")) return std::nullopt;
  const nlohmann::json& t = j["chat_template"];
  if (t.is_string()) return t.get<std::string>();
  if (t.is_array()) {
    for (const auto& entry : t) {
      if (entry.is_object() && entry.value("name", "") == "default" && entry.contains("template") &&
          entry["template"].is_string()) {
        return entry["template"].get<std::string>();
      }
    }
  }
  return std::nullopt;
}

// The tokenizer and chat template of a GGUF file's metadata.
Status attach_gguf_tokenizer(ModelRuntime& rt, const GgufFile& gguf,
                             std::optional<std::string>* template_source) {
  FS_ASSIGN_OR_RETURN(rt.tokenizer, Tokenizer::from_gguf(gguf));
  if (Result<std::string> t = gguf.get_string("tokenizer.chat_template"); t.is_ok())
    *template_source = *t;
  return Status::ok();
}

Status parse_template(ModelRuntime& rt, const std::optional<std::string>& source,
                      const std::string& path) {
  if (!source) return Status::ok();
  Result<ChatTemplate> parsed = ChatTemplate::parse(*source);
  if (!parsed.is_ok()) {
    return make_error(parsed.status().code(), "{}: chat template: {}", path,
                      parsed.status().message());
  }
  rt.chat_template = std::move(*parsed);
  return Status::ok();
}

void add_stop_tokens(ModelRuntime& rt, const ModelConfig& c) {
  add_unique(rt.stop_token_ids, c.eos_token_id);
  for (int64_t id : c.extra_eos_token_ids) add_unique(rt.stop_token_ids, id);
  if (rt.tokenizer) {
    add_unique(rt.stop_token_ids, rt.tokenizer->eos_id());
    // End-of-turn markers of common chat formats, when they are special tokens of this vocabulary.
    for (const char* eot :
         {"<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>"}) {
      const int32_t id = rt.tokenizer->token_to_id(eot);
      if (id >= 0 && rt.tokenizer->is_special(id)) add_unique(rt.stop_token_ids, id);
    }
  }
}

}  // namespace

Result<ModelRuntime> load_model_runtime(const std::string& path) {
  ModelRuntime rt;
  rt.model_path = path;
  FS_ASSIGN_OR_RETURN(rt.lm, CausalLm::load(path));
  const LoadedModel& loaded = rt.lm->loaded();
  std::optional<std::string> template_source;
  if (loaded.gguf) {
    FS_RETURN_IF_ERROR(attach_gguf_tokenizer(rt, *loaded.gguf, &template_source));
  } else if (std::filesystem::exists(std::filesystem::path(path) / "tokenizer.json")) {
    FS_ASSIGN_OR_RETURN(rt.tokenizer, Tokenizer::load(path));
    template_source = hf_chat_template(path);
  }
  FS_RETURN_IF_ERROR(parse_template(rt, template_source, path));
  add_stop_tokens(rt, rt.lm->config());
  return rt;
}

Result<ModelRuntime> make_dummy_runtime(const std::string& name, std::unique_ptr<CausalLm> lm,
                                        const ModelConfig& config,
                                        const std::string& tokenizer_path) {
  ModelRuntime rt;
  rt.model_path = name;
  rt.lm = std::move(lm);
  std::optional<std::string> template_source;
  if (!tokenizer_path.empty()) {
    std::error_code ec;
    if (std::filesystem::is_directory(tokenizer_path, ec)) {
      if (!std::filesystem::exists(std::filesystem::path(tokenizer_path) / "tokenizer.json")) {
        return not_found("tokenizer '{}': the folder has no tokenizer.json", tokenizer_path);
      }
      FS_ASSIGN_OR_RETURN(rt.tokenizer, Tokenizer::load(tokenizer_path));
      template_source = hf_chat_template(tokenizer_path);
    } else {
      FS_ASSIGN_OR_RETURN(std::shared_ptr<const GgufFile> gguf, GgufFile::open(tokenizer_path));
      FS_RETURN_IF_ERROR(attach_gguf_tokenizer(rt, *gguf, &template_source));
    }
    FS_RETURN_IF_ERROR(parse_template(rt, template_source, tokenizer_path));
  }
  add_stop_tokens(rt, config);
  return rt;
}

Result<std::vector<int32_t>> ModelRuntime::encode_text(const std::string& text) const {
  if (!tokenizer) return invalid_argument("{} has no tokenizer: pass token ids", model_path);
  return tokenizer->encode(text);
}

Result<std::vector<int32_t>> ModelRuntime::encode_chat(const nlohmann::ordered_json& messages,
                                                       bool add_generation_prompt) const {
  if (!tokenizer) return invalid_argument("{} has no tokenizer: pass token ids", model_path);
  if (!chat_template) return invalid_argument("{} has no chat template", model_path);
  const auto token_text = [&](int32_t id) {
    return tokenizer->is_valid_id(id) ? tokenizer->id_to_token(id) : std::string();
  };
  FS_ASSIGN_OR_RETURN(std::string prompt,
                      chat_template->apply(messages, add_generation_prompt,
                                           token_text(tokenizer->bos_id()),
                                           token_text(tokenizer->eos_id())));
  // The template already printed any BOS text it wants; do not add another.
  EncodeOptions options;
  options.add_special = false;
  return tokenizer->encode(prompt, options);
}

}  // namespace fs
