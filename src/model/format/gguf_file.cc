#include "model/format/gguf_file.h"

#include <cstring>
#include <limits>
#include <type_traits>

namespace fs {

namespace {

constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" read as a little-endian uint32
constexpr int kMaxArrayDepth = 8;            // nested arrays deeper than this are rejected
constexpr uint64_t kMaxArrayLength = uint64_t{1} << 26;
constexpr uint32_t kMaxDims = 4;  // GGML_MAX_DIMS

// GGUF metadata value types (gguf.md, `enum gguf_type`).
enum class GgufType : uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
};
constexpr uint32_t kNumGgufTypes = 13;

// Smallest encoding of one value of type t: bounds an array's element count by the bytes left.
uint64_t min_value_bytes(GgufType t) {
  switch (t) {
    case GgufType::kUint8:
    case GgufType::kInt8:
    case GgufType::kBool:
      return 1;
    case GgufType::kUint16:
    case GgufType::kInt16:
      return 2;
    case GgufType::kUint32:
    case GgufType::kInt32:
    case GgufType::kFloat32:
      return 4;
    case GgufType::kString:  // u64 length
    case GgufType::kUint64:
    case GgufType::kInt64:
    case GgufType::kFloat64:
      return 8;
    case GgufType::kArray:
      return 12;  // u32 type + u64 count
  }
  return 1;
}

// Sequential little-endian reader over the mapping; every read is bounds-checked.
class Cursor {
 public:
  Cursor(const uint8_t* data, size_t size, const std::string& path)
      : data_(data), size_(size), path_(path) {}

  size_t pos() const { return pos_; }
  size_t remaining() const { return size_ - pos_; }
  const std::string& path() const { return path_; }

  Status need(uint64_t n, std::string_view what) const {
    if (n > remaining()) {
      return data_loss("'{}': truncated: {} needs {} bytes at offset {}, file has {} left", path_,
                       what, n, pos_, remaining());
    }
    return Status::ok();
  }

  template <typename T>
  Status read(T* out, std::string_view what) {
    static_assert(std::is_trivially_copyable_v<T>);
    FS_RETURN_IF_ERROR(need(sizeof(T), what));
    std::memcpy(out, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return Status::ok();
  }

  Status read_string(std::string* out, std::string_view what) {
    uint64_t len = 0;
    FS_RETURN_IF_ERROR(read(&len, what));
    if (len > remaining()) {
      return data_loss(
          "'{}': {} has length {} at offset {}, past the end of the file ({} bytes left)", path_,
          what, len, pos_, remaining());
    }
    out->assign(reinterpret_cast<const char*>(data_ + pos_), len);
    pos_ += len;
    return Status::ok();
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
  const std::string& path_;
};

template <typename Stored, typename Raw>
Status read_scalar(Cursor& c, std::string_view what, GgufValue* out) {
  Raw raw;
  FS_RETURN_IF_ERROR(c.read(&raw, what));
  out->v = static_cast<Stored>(raw);
  return Status::ok();
}

Status read_value(Cursor& c, uint32_t type_id, int depth, const std::string& what, GgufValue* out) {
  if (type_id >= kNumGgufTypes) {
    return data_loss("'{}': {} has unknown value type id {}", c.path(), what, type_id);
  }
  switch (static_cast<GgufType>(type_id)) {
    case GgufType::kUint8:
      return read_scalar<uint64_t, uint8_t>(c, what, out);
    case GgufType::kInt8:
      return read_scalar<int64_t, int8_t>(c, what, out);
    case GgufType::kUint16:
      return read_scalar<uint64_t, uint16_t>(c, what, out);
    case GgufType::kInt16:
      return read_scalar<int64_t, int16_t>(c, what, out);
    case GgufType::kUint32:
      return read_scalar<uint64_t, uint32_t>(c, what, out);
    case GgufType::kInt32:
      return read_scalar<int64_t, int32_t>(c, what, out);
    case GgufType::kUint64:
      return read_scalar<uint64_t, uint64_t>(c, what, out);
    case GgufType::kInt64:
      return read_scalar<int64_t, int64_t>(c, what, out);
    case GgufType::kFloat32:
      return read_scalar<double, float>(c, what, out);
    case GgufType::kFloat64:
      return read_scalar<double, double>(c, what, out);
    case GgufType::kBool: {
      uint8_t b = 0;
      FS_RETURN_IF_ERROR(c.read(&b, what));
      if (b > 1) return data_loss("'{}': {} is a bool with value {}", c.path(), what, b);
      out->v = b != 0;
      return Status::ok();
    }
    case GgufType::kString: {
      std::string s;
      FS_RETURN_IF_ERROR(c.read_string(&s, what));
      out->v = std::move(s);
      return Status::ok();
    }
    case GgufType::kArray: {
      if (depth >= kMaxArrayDepth) {
        return data_loss("'{}': {} nests arrays deeper than {}", c.path(), what, kMaxArrayDepth);
      }
      uint32_t elem_type = 0;
      uint64_t count = 0;
      FS_RETURN_IF_ERROR(c.read(&elem_type, what));
      FS_RETURN_IF_ERROR(c.read(&count, what));
      if (elem_type >= kNumGgufTypes) {
        return data_loss("'{}': {} is an array of unknown value type id {}", c.path(), what,
                         elem_type);
      }
      // Checked before reserving: a corrupt count must not turn into a huge allocation.
      const uint64_t min_bytes = min_value_bytes(static_cast<GgufType>(elem_type));
      if (count > c.remaining() / min_bytes || count > kMaxArrayLength) {
        return data_loss(
            "'{}': {} has array length {}, more than the file can hold ({} bytes left)", c.path(),
            what, count, c.remaining());
      }
      GgufArray arr;
      arr.reserve(count);
      for (uint64_t i = 0; i < count; ++i) {
        arr.emplace_back();
        FS_RETURN_IF_ERROR(read_value(c, elem_type, depth + 1, what, &arr.back()));
      }
      out->v = std::move(arr);
      return Status::ok();
    }
  }
  return data_loss("'{}': {} has unknown value type id {}", c.path(), what, type_id);
}

}  // namespace

std::optional<int64_t> GgufValue::as_int() const {
  if (const auto* u = std::get_if<uint64_t>(&v)) {
    if (*u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
    return static_cast<int64_t>(*u);
  }
  if (const auto* i = std::get_if<int64_t>(&v)) return *i;
  return std::nullopt;
}

std::optional<double> GgufValue::as_float() const {
  if (const auto* d = std::get_if<double>(&v)) return *d;
  if (const auto* u = std::get_if<uint64_t>(&v)) return static_cast<double>(*u);
  if (const auto* i = std::get_if<int64_t>(&v)) return static_cast<double>(*i);
  return std::nullopt;
}

std::optional<bool> GgufValue::as_bool() const {
  if (const auto* b = std::get_if<bool>(&v)) return *b;
  return std::nullopt;
}

const std::string* GgufValue::as_string() const { return std::get_if<std::string>(&v); }
const GgufArray* GgufValue::as_array() const { return std::get_if<GgufArray>(&v); }

GgufFile::~GgufFile() = default;

Result<std::shared_ptr<const GgufFile>> GgufFile::open(const std::string& path) {
  FS_ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> mapped, MappedFile::open(path));
  auto file = std::shared_ptr<GgufFile>(new GgufFile());
  file->path_ = path;
  file->map_ = mapped->data();
  file->map_bytes_ = mapped->size();
  file->file_ = std::move(mapped);
  Cursor c(file->map_, file->map_bytes_, file->path_);

  uint32_t magic = 0;
  FS_RETURN_IF_ERROR(c.read(&magic, "the magic"));
  if (magic != kGgufMagic) {
    return data_loss("'{}': bad magic 0x{:08x}, not a GGUF file", path, magic);
  }
  uint32_t version = 0;
  FS_RETURN_IF_ERROR(c.read(&version, "the version"));
  if (version == 1) return unimplemented("'{}': GGUF version 1 is not supported (use v2/v3)", path);
  if (version != 2 && version != 3) {
    return data_loss("'{}': unsupported GGUF version {} (a big-endian file?)", path, version);
  }
  file->version_ = version;
  uint64_t num_tensors = 0;
  uint64_t num_kv = 0;
  FS_RETURN_IF_ERROR(c.read(&num_tensors, "the tensor count"));
  FS_RETURN_IF_ERROR(c.read(&num_kv, "the metadata count"));
  // Smallest possible KV: u64 key length + u32 type + 1 byte; tensor info: 8 + 4 + 8 + 4 + 8.
  if (num_kv > c.remaining() / 13) {
    return data_loss("'{}': metadata count {} is more than the file can hold", path, num_kv);
  }
  if (num_tensors > c.remaining() / 32) {
    return data_loss("'{}': tensor count {} is more than the file can hold", path, num_tensors);
  }

  for (uint64_t i = 0; i < num_kv; ++i) {
    std::string key;
    FS_RETURN_IF_ERROR(c.read_string(&key, fmt::format("metadata key #{}", i)));
    const std::string what = fmt::format("metadata '{}'", key);
    uint32_t type_id = 0;
    FS_RETURN_IF_ERROR(c.read(&type_id, what));
    GgufValue value;
    FS_RETURN_IF_ERROR(read_value(c, type_id, 0, what, &value));
    if (key == "general.alignment") {
      const auto a = value.as_int();
      if (type_id != static_cast<uint32_t>(GgufType::kUint32) || !a || *a <= 0 ||
          (*a & (*a - 1)) != 0) {
        return data_loss("'{}': general.alignment must be a power-of-two uint32", path);
      }
      file->alignment_ = static_cast<uint64_t>(*a);
    }
    if (!file->metadata_.emplace(std::move(key), std::move(value)).second) {
      return data_loss("'{}': duplicate {}", path, what);
    }
  }

  file->tensors_.reserve(num_tensors);
  for (uint64_t i = 0; i < num_tensors; ++i) {
    GgufTensorInfo t;
    FS_RETURN_IF_ERROR(c.read_string(&t.name, fmt::format("tensor info #{} name", i)));
    const std::string what = fmt::format("tensor '{}'", t.name);
    uint32_t n_dims = 0;
    FS_RETURN_IF_ERROR(c.read(&n_dims, what));
    if (n_dims == 0 || n_dims > kMaxDims) {
      return data_loss("'{}': {} has n_dims {}, expected 1..{}", path, what, n_dims, kMaxDims);
    }
    uint64_t ne[kMaxDims] = {1, 1, 1, 1};
    for (uint32_t d = 0; d < n_dims; ++d) FS_RETURN_IF_ERROR(c.read(&ne[d], what));
    uint32_t type_id = 0;
    FS_RETURN_IF_ERROR(c.read(&type_id, what));
    FS_RETURN_IF_ERROR(c.read(&t.offset_bytes, what));

    const auto dtype = dtype_from_ggml(type_id);
    if (!dtype) {
      return unimplemented("'{}': {} has unknown or unsupported ggml type id {}", path, what,
                           type_id);
    }
    t.dtype = *dtype;
    uint64_t num_elements = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      constexpr uint64_t kMaxElements = uint64_t{1} << 50;
      if (ne[d] > kMaxElements || (ne[d] != 0 && num_elements > kMaxElements / ne[d])) {
        return data_loss("'{}': {} has an absurd dimension {} (ne[{}])", path, what, ne[d], d);
      }
      num_elements *= ne[d];
    }
    for (uint32_t d = n_dims; d-- > 0;) t.shape.push_back(static_cast<int64_t>(ne[d]));
    const auto block = static_cast<uint64_t>(dtype_block_size(t.dtype));
    if (ne[0] % block != 0) {
      return data_loss("'{}': {} of type {} has row length {}, not a multiple of the block size {}",
                       path, what, dtype_name(t.dtype), ne[0], block);
    }
    t.nbytes = num_elements / block * static_cast<uint64_t>(dtype_block_bytes(t.dtype));
    if (t.offset_bytes % file->alignment_ != 0) {
      return data_loss("'{}': {} has offset {}, not aligned to {}", path, what, t.offset_bytes,
                       file->alignment_);
    }
    if (file->tensor_index_.count(t.name) != 0) {
      return data_loss("'{}': duplicate {}", path, what);
    }
    file->tensor_index_.emplace(t.name, file->tensors_.size());
    file->tensors_.push_back(std::move(t));
  }

  // The data section starts at the next multiple of the alignment after the tensor infos.
  const uint64_t info_end = c.pos();
  file->data_offset_ = (info_end + file->alignment_ - 1) / file->alignment_ * file->alignment_;
  const uint64_t size = file->map_bytes_;
  for (GgufTensorInfo& t : file->tensors_) {
    if (file->data_offset_ > size || t.offset_bytes > size - file->data_offset_ ||
        t.nbytes > size - file->data_offset_ - t.offset_bytes) {
      return data_loss(
          "'{}': tensor '{}' data [{}, +{} bytes) lies outside the file ({} bytes, data section at "
          "{}); truncated?",
          path, t.name, t.offset_bytes, t.nbytes, size, file->data_offset_);
    }
    t.data = file->map_ + file->data_offset_ + t.offset_bytes;
  }
  return std::shared_ptr<const GgufFile>(std::move(file));
}

void GgufFile::advise_willneed() const {
  if (file_)
    file_->advise_willneed(data_offset_, map_bytes_ - std::min<uint64_t>(data_offset_, map_bytes_));
}

void GgufFile::read_in(const std::function<void(uint64_t)>& progress) const {
  if (file_) {
    file_->read_in(data_offset_, map_bytes_ - std::min<uint64_t>(data_offset_, map_bytes_),
                   [&](size_t done) { progress(done); });
  }
}

const GgufValue* GgufFile::find(std::string_view key) const {
  auto it = metadata_.find(key);
  return it == metadata_.end() ? nullptr : &it->second;
}

const GgufTensorInfo* GgufFile::find_tensor(std::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

namespace {
Status missing_key(const std::string& path, std::string_view key) {
  return not_found("'{}': metadata key '{}' is missing", path, key);
}
Status wrong_type(const std::string& path, std::string_view key, std::string_view expected) {
  return invalid_argument("'{}': metadata key '{}' is not {}", path, key, expected);
}
}  // namespace

Result<int64_t> GgufFile::get_int(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return missing_key(path_, key);
  auto i = v->as_int();
  if (!i) return wrong_type(path_, key, "an integer");
  return *i;
}

Result<double> GgufFile::get_float(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return missing_key(path_, key);
  auto f = v->as_float();
  if (!f) return wrong_type(path_, key, "a number");
  return *f;
}

Result<std::string> GgufFile::get_string(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return missing_key(path_, key);
  const std::string* s = v->as_string();
  if (s == nullptr) return wrong_type(path_, key, "a string");
  return *s;
}

Result<std::vector<std::string>> GgufFile::get_string_array(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return missing_key(path_, key);
  const GgufArray* arr = v->as_array();
  if (arr == nullptr) return wrong_type(path_, key, "an array of strings");
  std::vector<std::string> out;
  out.reserve(arr->size());
  for (const GgufValue& e : *arr) {
    const std::string* s = e.as_string();
    if (s == nullptr) return wrong_type(path_, key, "an array of strings");
    out.push_back(*s);
  }
  return out;
}

Result<std::vector<double>> GgufFile::get_float_array(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return missing_key(path_, key);
  const GgufArray* arr = v->as_array();
  if (arr == nullptr) return wrong_type(path_, key, "an array of numbers");
  std::vector<double> out;
  out.reserve(arr->size());
  for (const GgufValue& e : *arr) {
    auto f = e.as_float();
    if (!f) return wrong_type(path_, key, "an array of numbers");
    out.push_back(*f);
  }
  return out;
}

Result<std::vector<int64_t>> GgufFile::get_int_array(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return missing_key(path_, key);
  const GgufArray* arr = v->as_array();
  if (arr == nullptr) return wrong_type(path_, key, "an array of integers");
  std::vector<int64_t> out;
  out.reserve(arr->size());
  for (const GgufValue& e : *arr) {
    auto i = e.as_int();
    if (!i) return wrong_type(path_, key, "an array of integers");
    out.push_back(*i);
  }
  return out;
}

}  // namespace fs
