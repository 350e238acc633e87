#include "model/format/hf_checkpoint.h"

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

namespace fs {

Result<nlohmann::json> read_json_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return not_found("'{}': cannot open", path);
  std::stringstream ss;
  ss << in.rdbuf();
  nlohmann::json j = nlohmann::json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return data_loss("'{}': not valid JSON", path);
  return j;
}

Result<std::shared_ptr<const HfCheckpoint>> HfCheckpoint::open(const std::string& dir) {
  namespace stdfs = std::filesystem;
  std::error_code ec;
  if (!stdfs::is_directory(dir, ec)) return not_found("'{}': not a directory", dir);
  auto ckpt = std::shared_ptr<HfCheckpoint>(new HfCheckpoint());
  ckpt->dir_ = dir;
  ckpt->config_path_ = (stdfs::path(dir) / "config.json").string();
  if (!stdfs::exists(ckpt->config_path_, ec)) {
    return not_found("'{}': no config.json (expected a Hugging Face checkpoint folder)", dir);
  }
  FS_ASSIGN_OR_RETURN(ckpt->config_, read_json_file(ckpt->config_path_));
  if (!ckpt->config_.is_object()) return data_loss("'{}': not a JSON object", ckpt->config_path_);

  // Shard file names, from the index when there is one.
  std::vector<std::string> shard_names;
  std::map<std::string, std::string> weight_map;
  const std::string single = (stdfs::path(dir) / "model.safetensors").string();
  const std::string index_path = (stdfs::path(dir) / "model.safetensors.index.json").string();
  if (stdfs::exists(index_path, ec)) {
    FS_ASSIGN_OR_RETURN(nlohmann::json index, read_json_file(index_path));
    auto wm = index.is_object() ? index.find("weight_map") : index.end();
    if (!index.is_object() || wm == index.end() || !wm->is_object()) {
      return data_loss("'{}': no \"weight_map\" object", index_path);
    }
    std::set<std::string> seen;
    for (auto it = wm->begin(); it != wm->end(); ++it) {
      if (!it->is_string())
        return data_loss("'{}': weight_map['{}'] is not a string", index_path, it.key());
      const std::string file = it->get<std::string>();
      // Shards live in the folder itself: refuse paths that would escape it.
      if (file.empty() || file.find('/') != std::string::npos || file == "." || file == "..") {
        return data_loss("'{}': bad shard file name '{}'", index_path, file);
      }
      weight_map[it.key()] = file;
      if (seen.insert(file).second) shard_names.push_back(file);
    }
  } else if (stdfs::exists(single, ec)) {
    shard_names.push_back("model.safetensors");
  } else {
    return not_found("'{}': neither model.safetensors nor model.safetensors.index.json", dir);
  }

  std::map<std::string, size_t> shard_of_file;
  for (const std::string& name : shard_names) {
    const std::string path = (stdfs::path(dir) / name).string();
    FS_ASSIGN_OR_RETURN(auto shard, SafetensorsFile::open(path));
    shard_of_file[name] = ckpt->shards_.size();
    ckpt->shards_.push_back(std::move(shard));
  }
  for (size_t s = 0; s < ckpt->shards_.size(); ++s) {
    for (const SafetensorsTensor& t : ckpt->shards_[s]->tensors()) {
      auto [it, inserted] = ckpt->index_.emplace(t.name, std::make_pair(s, &t));
      if (!inserted) {
        return data_loss("'{}': tensor '{}' is in both '{}' and '{}'", dir, t.name,
                         ckpt->shards_[it->second.first]->path(), ckpt->shards_[s]->path());
      }
    }
  }
  for (const auto& [tensor, file] : weight_map) {
    auto it = ckpt->index_.find(tensor);
    if (it == ckpt->index_.end() || it->second.first != shard_of_file[file]) {
      return data_loss("'{}': the index puts tensor '{}' in '{}', which does not hold it",
                       index_path, tensor, file);
    }
  }
  return std::shared_ptr<const HfCheckpoint>(std::move(ckpt));
}

uint64_t HfCheckpoint::total_bytes() const {
  uint64_t n = 0;
  for (const auto& s : shards_) n += s->file_bytes();
  return n;
}

const SafetensorsTensor* HfCheckpoint::find_tensor(std::string_view name,
                                                   std::string* file_path) const {
  auto it = index_.find(name);
  if (it == index_.end()) return nullptr;
  if (file_path != nullptr) *file_path = shards_[it->second.first]->path();
  return it->second.second;
}

void HfCheckpoint::advise_willneed() const {
  for (const auto& s : shards_) s->advise_willneed();
}

void HfCheckpoint::read_in(const std::function<void(uint64_t)>& progress) const {
  uint64_t before = 0;
  for (const auto& s : shards_) {
    s->read_in([&](size_t done) { progress(before + done); });
    before += s->file_bytes();
  }
}

}  // namespace fs
