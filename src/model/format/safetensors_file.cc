#include "model/format/safetensors_file.h"

#include <algorithm>
#include <cstring>
#include <exception>
#include <set>

#include <nlohmann/json.hpp>

namespace fs {

namespace {
constexpr uint64_t kMaxHeaderBytes = uint64_t{100} << 20;  // the reference implementation's limit
constexpr uint64_t kMaxElements = uint64_t{1} << 50;

std::optional<DType> dtype_from_name(std::string_view name) {
  if (name == "F32") return DType::kF32;
  if (name == "F16") return DType::kF16;
  if (name == "BF16") return DType::kBF16;
  return std::nullopt;
}

// Parses one header entry into `t`; `t.data` is set from the offsets relative to `data`.
Status parse_entry(const std::string& path, const std::string& name, const nlohmann::json& entry,
                   const uint8_t* data, uint64_t data_bytes, SafetensorsTensor* t) {
  t->name = name;
  if (!entry.is_object()) return data_loss("'{}': tensor '{}': entry is not an object", path, name);
  auto dt = entry.find("dtype");
  auto shape = entry.find("shape");
  auto offs = entry.find("data_offsets");
  if (dt == entry.end() || !dt->is_string()) {
    return data_loss("'{}': tensor '{}': missing or non-string \"dtype\"", path, name);
  }
  if (shape == entry.end() || !shape->is_array()) {
    return data_loss("'{}': tensor '{}': missing or non-array \"shape\"", path, name);
  }
  if (offs == entry.end() || !offs->is_array() || offs->size() != 2 ||
      !(*offs)[0].is_number_unsigned() || !(*offs)[1].is_number_unsigned()) {
    return data_loss("'{}': tensor '{}': \"data_offsets\" must be two non-negative integers", path,
                     name);
  }
  t->dtype_name = dt->get<std::string>();
  t->dtype = dtype_from_name(t->dtype_name);
  const int64_t elem_bytes = safetensors_dtype_bytes(t->dtype_name);
  uint64_t num_elements = 1;
  for (const auto& d : *shape) {
    if (!d.is_number_unsigned()) {
      return data_loss("'{}': tensor '{}': shape entries must be non-negative integers", path,
                       name);
    }
    const uint64_t n = d.get<uint64_t>();
    if (n > kMaxElements || (n != 0 && num_elements > kMaxElements / n)) {
      return data_loss("'{}': tensor '{}': absurd shape dimension {}", path, name, n);
    }
    num_elements *= n;
    t->shape.push_back(static_cast<int64_t>(n));
  }
  const uint64_t begin = (*offs)[0].get<uint64_t>();
  const uint64_t end = (*offs)[1].get<uint64_t>();
  if (begin > end || end > data_bytes) {
    return data_loss("'{}': tensor '{}': data_offsets [{}, {}) outside the data section ({} bytes)",
                     path, name, begin, end, data_bytes);
  }
  t->nbytes = end - begin;
  // Dtypes newer than this reader (elem_bytes == 0) are listed unchecked; using one is an error
  // anyway.
  if (elem_bytes != 0 && t->nbytes != num_elements * static_cast<uint64_t>(elem_bytes)) {
    return data_loss("'{}': tensor '{}': {} bytes for {} elements of {}", path, name, t->nbytes,
                     num_elements, t->dtype_name);
  }
  t->data = data + begin;
  return Status::ok();
}

}  // namespace

int64_t safetensors_dtype_bytes(std::string_view n) {
  if (n == "F64" || n == "I64" || n == "U64") return 8;
  if (n == "F32" || n == "I32" || n == "U32") return 4;
  if (n == "F16" || n == "BF16" || n == "I16" || n == "U16") return 2;
  if (n == "I8" || n == "U8" || n == "BOOL" || n == "F8_E4M3" || n == "F8_E5M2") return 1;
  return 0;
}

Result<std::shared_ptr<const SafetensorsFile>> SafetensorsFile::open(const std::string& path) {
  FS_ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> mapped, MappedFile::open(path));
  const uint8_t* base = mapped->data();
  const uint64_t size = mapped->size();
  if (size < 8) {
    return data_loss("'{}': truncated: {} bytes, the 8-byte header length is missing", path, size);
  }
  uint64_t header_bytes = 0;
  std::memcpy(&header_bytes, base, 8);
  if (header_bytes > size - 8 || header_bytes > kMaxHeaderBytes) {
    return data_loss(
        "'{}': header length {} exceeds the file ({} bytes); truncated or not "
        "safetensors",
        path, header_bytes, size);
  }
  const char* json_begin = reinterpret_cast<const char*>(base + 8);
  // nlohmann keeps the last of duplicate keys silently, so top-level keys are checked while
  // parsing.
  std::string duplicate;
  std::set<std::string> keys;
  auto on_event = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    if (depth == 1 && event == nlohmann::json::parse_event_t::key && parsed.is_string() &&
        !keys.insert(parsed.get<std::string>()).second && duplicate.empty()) {
      duplicate = parsed.get<std::string>();
    }
    return true;
  };
  nlohmann::json header = nlohmann::json::parse(json_begin, json_begin + header_bytes, on_event,
                                                /*allow_exceptions=*/false);
  if (header.is_discarded() || !header.is_object()) {
    return data_loss("'{}': the header is not a JSON object", path);
  }
  if (!duplicate.empty())
    return data_loss("'{}': duplicate tensor '{}' in the header", path, duplicate);
  auto file = std::shared_ptr<SafetensorsFile>(new SafetensorsFile());
  const uint8_t* data = base + 8 + header_bytes;
  const uint64_t data_bytes = size - 8 - header_bytes;
  try {  // nlohmann accessors can throw on types we did not anticipate; keep it inside
    for (auto it = header.begin(); it != header.end(); ++it) {
      if (it.key() == "__metadata__") {
        if (!it->is_object()) return data_loss("'{}': __metadata__ is not an object", path);
        for (auto m = it->begin(); m != it->end(); ++m) {
          file->metadata_[m.key()] = m->is_string() ? m->get<std::string>() : m->dump();
        }
        continue;
      }
      SafetensorsTensor t;
      FS_RETURN_IF_ERROR(parse_entry(path, it.key(), *it, data, data_bytes, &t));
      file->tensors_.push_back(std::move(t));
    }
  } catch (const std::exception& e) {
    return data_loss("'{}': bad header: {}", path, e.what());
  }
  std::sort(file->tensors_.begin(), file->tensors_.end(),
            [](const auto& a, const auto& b) { return a.name < b.name; });
  file->file_ = std::move(mapped);
  return std::shared_ptr<const SafetensorsFile>(std::move(file));
}

const SafetensorsTensor* SafetensorsFile::find_tensor(std::string_view name) const {
  auto it =
      std::lower_bound(tensors_.begin(), tensors_.end(), name,
                       [](const SafetensorsTensor& t, std::string_view n) { return t.name < n; });
  return it != tensors_.end() && it->name == name ? &*it : nullptr;
}

}  // namespace fs
