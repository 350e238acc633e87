// A Hugging Face checkpoint folder: config.json plus model.safetensors, or
// model.safetensors.index.json ({"weight_map": {tensor: shard file}}) plus its shards.
// Tensor lookup by name across shards. Errors name the folder or the file at fault. Immutable after
// open(): thread-safe.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/status.h"
#include "model/format/safetensors_file.h"

namespace fs {

class HfCheckpoint {
 public:
  // Errors: kNotFound (no config.json, no weights file, a shard named in the index is missing),
  // kDataLoss (bad JSON, a tensor listed in the index absent from its shard, a tensor in two
  // shards).
  static Result<std::shared_ptr<const HfCheckpoint>> open(const std::string& dir);

  const std::string& dir() const { return dir_; }
  const std::string& config_path() const { return config_path_; }
  const nlohmann::json& config() const { return config_; }  // parsed config.json (an object)
  const std::vector<std::shared_ptr<const SafetensorsFile>>& shards() const { return shards_; }
  uint64_t total_bytes() const;

  // The tensor and the shard file holding it; nullptr when no shard has it.
  const SafetensorsTensor* find_tensor(std::string_view name,
                                       std::string* file_path = nullptr) const;
  size_t num_tensors() const { return index_.size(); }
  void advise_willneed() const;
  // Every shard's MappedFile::read_in in turn; progress(bytes read over all shards).
  void read_in(const std::function<void(uint64_t)>& progress) const;

 private:
  HfCheckpoint() = default;
  std::string dir_;
  std::string config_path_;
  nlohmann::json config_;
  std::vector<std::shared_ptr<const SafetensorsFile>> shards_;
  // name -> (shard index, tensor)
  std::map<std::string, std::pair<size_t, const SafetensorsTensor*>, std::less<>> index_;
};

// Reads and parses a JSON file without throwing. kNotFound when absent, kDataLoss when not JSON.
Result<nlohmann::json> read_json_file(const std::string& path);

}  // namespace fs
