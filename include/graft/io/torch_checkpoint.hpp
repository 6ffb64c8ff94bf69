// graft/io/torch_checkpoint.hpp - load PyTorch .pth/.bin checkpoints (torch.save's zip format) in C++.
//
// Not part of <graft/graft.hpp>: include it on purpose.
//
//   #include <graft/io/torch_checkpoint.hpp>
//   auto named = graft::io::load_torch_checkpoint("resnet18.pth");   // vector<pair<name, Tensor>>
//   for (auto& [name, t] : named) std::cout << name << " " << t.shape() << "\n";
//
// Layout of the archive (torch >= 1.6): <prefix>/data.pkl (the pickle), <prefix>/data/<key> (one raw
// little-endian storage per key), <prefix>/byteorder (optional, must be "little"), <prefix>/version.
// The prefix is "archive" in recent torch and the file's stem in torch 1.13; any single directory is
// accepted. Legacy (pre-1.6, non-zip) torch.save files are read too (load_legacy_torch_checkpoint:
// pickles back to back, then the raw storages).
//
// Tensors: each gets the storage's dtype (Float/Double/Half/BFloat16/Int/Long/Bool storages) and the
// sizes, strides and storage offset _rebuild_tensor_v2 gives; tensors that share a storage in the
// file share one graft::Storage (a saved transpose stays a non-contiguous view). Storages live
// on the CPU (whatever device they were saved from): borrowed from the file's memory map when aligned,
// else copied. requires_grad is not restored.
//
// Which tensors, and their names (the order is the file's order):
//   1. root is a state_dict (a dict whose keys are str and whose values are tensors or None):
//      the names as saved; None values are skipped.
//   2. root is a whole pickled nn.Module (torch.save(model)): its _parameters then its persistent
//      _buffers, then each child in _modules, recursively, with dotted names (layer1.0.conv1.weight),
//      which is the order and naming of model.state_dict(). None entries are skipped.
//   3. root is any other dict: the first of the keys "state_dict", "model_state_dict", "model",
//      "module", "net", "network", "ema", "params", "weights" whose value is (or, by this same rule,
//      holds) a state_dict or module; failing that, the only value of the root dict that is itself a
//      state_dict or module. Otherwise an error lists the root's keys.
//   Names are returned as saved (a DataParallel "module." prefix is kept).
//
// Contract: returns every tensor, or throws graft::Error naming the file, the archive entry or pickle
// byte offset or state_dict key, and what was expected and found: a missing or unreadable entry, a
// storage entry whose size differs from numel * element size, a bool storage byte other than 0/1,
// a view reaching past its storage (offset + sum((size-1)*stride) >= numel), negative
// sizes/strides/offset, more than 8 dims, a storage used with two dtypes, duplicate names, a module
// graph past kMaxModules / kMaxModuleDepth, or no state_dict found.
#pragma once
#include <cstdint>
#include <cstring>
#include <functional>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "graft/graft.hpp"  // Tensor's members are defined across the core and op headers
#include "graft/io/mmap.hpp"
#include "graft/io/pickle.hpp"
#include "graft/io/zip.hpp"

namespace graft::io {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

namespace detail_torch {

using pickle::Kind;
using pickle::Value;

inline constexpr int kMaxModuleDepth = 64;
inline constexpr int kMaxContainerDepth = 8;
inline constexpr int64_t kMaxModules = 100000;  // a shared submodule is walked once per name, as in
                                                // state_dict(); this bounds crafted module DAGs

inline bool is_module(const Value* v) {
  if (v->kind != Kind::Object || v->state == nullptr || v->state->kind != Kind::Dict) return false;
  const Value* p = v->state->get("_parameters");
  const Value* m = v->state->get("_modules");
  return p != nullptr && p->kind == Kind::Dict && m != nullptr && m->kind == Kind::Dict;
}

inline bool is_state_dict(const Value* v) {
  if (v->kind != Kind::Dict) return false;
  for (const auto& [k, t] : v->entries)
    if (k->kind != Kind::String || (t->kind != Kind::Tensor && t->kind != Kind::None)) return false;
  return true;
}

inline const char* const kContainerKeys[] = {"state_dict", "model_state_dict", "model", "module", "net",
                                             "network",    "ema",              "params", "weights"};

// Rule 3 of the header comment; nullptr when nothing is found. Each value is examined once
// (`visited`), so cyclic or shared containers cannot make the search exponential.
inline const Value* find_model(const Value* v, int depth, std::set<const Value*>& visited) {
  if (!visited.insert(v).second) return nullptr;
  if (is_module(v) || is_state_dict(v)) return v;
  if (v->kind != Kind::Dict || depth >= kMaxContainerDepth) return nullptr;
  for (const char* key : kContainerKeys)
    if (const Value* inner = v->get(key))
      if (const Value* found = find_model(inner, depth + 1, visited)) return found;
  if (depth == 0) {
    const Value* only = nullptr;
    int n = 0;
    for (const auto& [k, inner] : v->entries)
      if (is_module(inner) || is_state_dict(inner)) {
        only = inner;
        ++n;
      }
    if (n == 1) return only;
  }
  return nullptr;
}
inline const Value* find_model(const Value* root) {
  std::set<const Value*> visited;
  return find_model(root, 0, visited);
}

// The raw bytes of one storage: where they are (for messages) and what names them.
struct StorageBytes {
  std::span<const uint8_t> data;
  uint64_t file_offset = 0;
  std::string entry;  // the zip entry, or "storage <key>" for legacy files
};
// key -> its bytes; throws graft::Error naming `tensor` when the storage is missing.
using StorageLookup = std::function<StorageBytes(const std::string& tensor, const std::string& key)>;

class Loader {
 public:
  Loader(std::string source, StorageLookup lookup, std::shared_ptr<void> keep_alive)
      : source_(std::move(source)), lookup_(std::move(lookup)), keep_alive_(std::move(keep_alive)) {}

  void collect(const Value* v, NamedTensors& out) {
    if (is_module(v))
      collect_module(v, "", 0, out);
    else
      collect_state_dict(v, out);
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw Error(detail::concat("load_torch_checkpoint: ", source_, ": ", what));
  }

  void emit(const std::string& name, const Value* t, NamedTensors& out) {
    if (!names_.insert(name).second) fail(detail::concat("duplicate tensor name '", name, "'"));
    out.emplace_back(name, make_tensor(name, t));
  }

  void collect_state_dict(const Value* d, NamedTensors& out) {
    for (const auto& [k, t] : d->entries) {
      if (t->kind == Kind::None) continue;
      emit(k->text, t, out);
    }
  }

  // module.state_dict() order: own parameters, own persistent buffers, then children.
  void collect_module(const Value* m, const std::string& prefix, int depth, NamedTensors& out) {
    if (depth > kMaxModuleDepth)
      fail(detail::concat("module '", prefix, "' nested deeper than ", kMaxModuleDepth, " levels (cyclic?)"));
    if (++modules_visited_ > kMaxModules)
      fail(detail::concat("more than ", kMaxModules, " modules (at '", prefix, "'); a corrupt or crafted module graph?"));
    const Value* st = m->state;
    std::set<std::string> non_persistent;
    if (const Value* s = st->get("_non_persistent_buffers_set"))
      if (s->kind == Kind::Object && s->args && s->args->items.size() == 1 && s->args->items[0]->kind == Kind::List)
        for (const Value* n : s->args->items[0]->items)
          if (n->kind == Kind::String) non_persistent.insert(n->text);
    for (const char* field : {"_parameters", "_buffers"}) {
      const Value* d = st->get(field);
      if (d == nullptr) continue;
      if (d->kind != Kind::Dict) fail(detail::concat("module '", prefix, "': ", field, " is a ", pickle::kind_name(d->kind), ", not a dict"));
      for (const auto& [k, t] : d->entries) {
        if (k->kind != Kind::String) fail(detail::concat("module '", prefix, "': ", field, " has a non-str key"));
        if (t->kind == Kind::None) continue;
        if (std::string(field) == "_buffers" && non_persistent.count(k->text)) continue;
        if (t->kind != Kind::Tensor)
          fail(detail::concat("module '", prefix, "': ", field, "['", k->text, "'] is a ", pickle::kind_name(t->kind), ", not a tensor"));
        emit(prefix + k->text, t, out);
      }
    }
    for (const auto& [k, child] : st->get("_modules")->entries) {
      if (k->kind != Kind::String) fail(detail::concat("module '", prefix, "': _modules has a non-str key"));
      if (child->kind == Kind::None) continue;
      if (!is_module(child))
        fail(detail::concat("submodule '", prefix + k->text, "' is a ", pickle::kind_name(child->kind),
                            " without _parameters/_modules, not an nn.Module"));
      collect_module(child, prefix + k->text + ".", depth + 1, out);
    }
  }

  struct LoadedStorage {
    std::shared_ptr<Storage> storage;
    DType dtype;
    int64_t numel;
  };

  const LoadedStorage& storage_for(const std::string& tensor, const Value* s) {
    auto it = storages_.find(s->text);
    if (it != storages_.end()) {
      if (it->second.dtype != s->dtype)
        fail(detail::concat("tensor '", tensor, "': storage '", s->text, "' used as ", s->name,
                            " after being loaded with another dtype"));
      return it->second;
    }
    const StorageBytes found = lookup_(tensor, s->text);
    const std::string& entry = found.entry;
    const auto data = found.data;
    const uint64_t elem = dtype_size(s->dtype);
    if (data.size() != uint64_t(s->integer) * elem)
      fail(detail::concat("tensor '", tensor, "': entry '", entry, "' holds ", data.size(), " bytes, but the pickle says ",
                          s->integer, " elements of ", s->name, " (", uint64_t(s->integer) * elem, " bytes)"));
    if (s->dtype == DType::Bool)  // any other byte is not a bool (reading it would be undefined)
      for (size_t i = 0; i < data.size(); ++i)
        if (data[i] > 1)
          fail(detail::concat("tensor '", tensor, "': entry '", entry, "' byte ", i, " (file byte offset ",
                              found.file_offset + i, ") is ", int(data[i]), ", not a bool (0 or 1)"));
    // Borrow the archive's bytes (a memory map) when something owns them and they are 64-byte
    // aligned, as torch aligns storages; otherwise copy. Files are little-endian, as is every target.
    std::shared_ptr<Storage> storage;
    const bool aligned = reinterpret_cast<uintptr_t>(data.data()) % CpuCachingAllocator::kAlign == 0;
    if (keep_alive_ && aligned && !data.empty()) {
      storage = std::make_shared<Storage>(const_cast<uint8_t*>(data.data()), data.size(), kCPU, keep_alive_);
    } else {
      storage = std::make_shared<Storage>(data.size(), kCPU);
      if (!data.empty()) std::memcpy(storage->data(), data.data(), data.size());
    }
    return storages_.emplace(s->text, LoadedStorage{std::move(storage), s->dtype, s->integer}).first->second;
  }

  Tensor make_tensor(const std::string& name, const Value* t) {
    if (t->kind != Kind::Tensor)
      fail(detail::concat("'", name, "' is a ", pickle::kind_name(t->kind), ", not a tensor"));
    const Value* s = t->storage;
    const auto where = [&] {
      std::string g = "offset " + std::to_string(t->integer) + ", sizes [";
      for (size_t i = 0; i < t->sizes.size(); ++i) g += (i ? ", " : "") + std::to_string(t->sizes[i]);
      g += "], strides [";
      for (size_t i = 0; i < t->strides.size(); ++i) g += (i ? ", " : "") + std::to_string(t->strides[i]);
      return g + "]";
    };
    if (t->sizes.size() > size_t(kMaxDims))
      fail(detail::concat("tensor '", name, "' has ", t->sizes.size(), " dims, Graft supports at most ", kMaxDims));
    if (t->integer < 0) fail(detail::concat("tensor '", name, "': negative storage offset (", where(), ")"));
    // Highest element the view reaches, computed without overflow (every term is checked against
    // the storage size, which is below 2^48).
    const LoadedStorage& ls = storage_for(name, s);
    bool empty = false;
    for (size_t i = 0; i < t->sizes.size(); ++i) {
      if (t->sizes[i] < 0 || t->strides[i] < 0)
        fail(detail::concat("tensor '", name, "': negative size or stride (", where(), ")"));
      empty = empty || t->sizes[i] == 0;
    }
    const int64_t n = ls.numel;
    if (empty) {
      if (t->integer > n) fail(detail::concat("tensor '", name, "': offset past storage '", s->text, "' of ", n, " elements (", where(), ")"));
    } else {
      int64_t last = t->integer;
      bool past = last >= n;
      for (size_t i = 0; i < t->sizes.size() && !past; ++i) {
        const int64_t ext = t->sizes[i] - 1;
        if (ext > 0 && t->strides[i] > (n - 1 - last) / ext) past = true;
        else last += ext * t->strides[i];
      }
      if (past)
        fail(detail::concat("tensor '", name, "': view (", where(), ") reaches past storage '", s->text, "' of ", n,
                            " elements (storage too small for the view)"));
    }
    auto impl = std::make_shared<TensorImpl>();
    impl->storage = ls.storage;
    impl->shape = Shape(t->sizes);
    impl->strides = Shape(t->strides);
    impl->offset = t->integer;
    impl->dtype = ls.dtype;
    impl->name = name;
    return Tensor(std::move(impl));
  }

  std::string source_;
  StorageLookup lookup_;
  std::shared_ptr<void> keep_alive_;
  std::map<std::string, LoadedStorage> storages_;
  std::set<std::string> names_;
  int64_t modules_visited_ = 0;
};

inline std::string describe_root(const Value* v) {
  std::string s = pickle::kind_name(v->kind);
  if (v->kind == Kind::Dict) {
    s += " with keys [";
    size_t i = 0;
    for (const auto& [k, x] : v->entries) {
      if (i) s += ", ";
      if (i++ == 16) {
        s += "...";
        break;
      }
      s += k->kind == Kind::String ? "'" + k->text + "'" : k->kind == Kind::Int ? std::to_string(k->integer) : pickle::kind_name(k->kind);
    }
    s += "]";
  } else if (v->kind == Kind::Object && v->callable && v->callable->kind == Kind::Global) {
    s += " of class " + v->callable->text + "." + v->callable->name;
  }
  return s;
}

}  // namespace detail_torch

// Loads from an already opened archive (its source() names it in errors).
inline NamedTensors load_torch_checkpoint(const ZipArchive& zip) {
  const std::string& src = zip.source();
  std::string prefix;
  for (const auto& e : zip.entries()) {
    const auto slash = e.name.find('/');
    if (slash != std::string::npos && slash > 0 && e.name.substr(slash) == "/data.pkl") {
      prefix = e.name.substr(0, slash);
      break;
    }
  }
  GRAFT_CHECK(!prefix.empty(), "load_torch_checkpoint", src,
              ": no '<dir>/data.pkl' entry; not a checkpoint written by torch.save");
  if (const ZipEntry* bo = zip.find(prefix + "/byteorder")) {
    const auto b = zip.read(*bo);
    const std::string order(b.begin(), b.end());
    GRAFT_CHECK(order == "little", "load_torch_checkpoint", src, ": entry '", bo->name, "' says byte order '", order,
                "', only 'little' is supported");
  }
  const pickle::Pickle p = pickle::unpickle(zip.read(prefix + "/data.pkl"), src + ":" + prefix + "/data.pkl");
  const pickle::Value* model = detail_torch::find_model(p.root());
  GRAFT_CHECK(model != nullptr, "load_torch_checkpoint", src, ": no state_dict found: the pickle holds a ",
              detail_torch::describe_root(p.root()),
              "; expected a dict of tensors, an nn.Module, or a dict holding one under 'state_dict', 'model', ...");
  NamedTensors out;
  auto lookup = [&zip, &prefix, &src](const std::string& tensor, const std::string& key) {
    const std::string entry = prefix + "/data/" + key;
    const ZipEntry* e = zip.find(entry);
    GRAFT_CHECK(e != nullptr, "load_torch_checkpoint", src, ": tensor '", tensor, "': storage entry '", entry,
                "' is missing");
    return detail_torch::StorageBytes{zip.read(*e), e->data_offset, entry};
  };
  detail_torch::Loader(src, lookup, zip.keep_alive()).collect(model, out);
  return out;
}

namespace detail_torch {
// The first pickle of every legacy file: the 80-bit magic number 0x1950a86a20f9469cfc6c (protocol 2).
inline constexpr uint8_t kLegacyMagic[15] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46,
                                             0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e};
inline bool is_legacy(std::span<const uint8_t> bytes) {
  return bytes.size() >= 4 && bytes[0] == 0x80 && bytes[1] == 0x02 && bytes[2] == 0x8a && bytes[3] == 0x0a;
}
}  // namespace detail_torch

// Legacy (torch < 1.6, or _use_new_zipfile_serialization=False) files: pickles back to back, then
// the raw storages.
//   magic number pickle, protocol version pickle (1001), sys_info pickle ({"little_endian": True, ...}),
//   the object pickle (persistent ids ('storage', type, key, location, numel, None)),
//   the sorted list of storage keys (a pickle), then per key: int64 numel (little-endian) and
//   numel * element size bytes.
// Every length is checked against the file; errors name the file, the byte offset and the storage key.
inline NamedTensors load_legacy_torch_checkpoint(std::span<const uint8_t> bytes, const std::string& source,
                                                 std::shared_ptr<void> keep_alive = {}) {
  using pickle::Kind;
  const auto fail = [&](uint64_t offset, const std::string& what) {
    throw Error(detail::concat("load_torch_checkpoint: ", source, ": legacy format, byte offset ", offset, ": ", what));
  };
  if (bytes.size() < sizeof detail_torch::kLegacyMagic ||
      std::memcmp(bytes.data(), detail_torch::kLegacyMagic, sizeof detail_torch::kLegacyMagic) != 0)
    fail(0, "bad magic number (not a torch.save file)");
  size_t pos = sizeof detail_torch::kLegacyMagic;
  auto next_pickle = [&](const char* what) {
    pickle::Pickle p = pickle::unpickle(bytes.subspan(pos), detail::concat(source, " (", what, " pickle at byte ", pos, ")"));
    pos += p.end_offset();
    return p;
  };
  const pickle::Pickle version = next_pickle("protocol version");
  if (version.root()->kind != Kind::Int || version.root()->integer != 1001)
    fail(pos, "protocol version is not 1001");
  const pickle::Pickle sys_info = next_pickle("sys_info");
  if (sys_info.root()->kind == Kind::Dict)
    if (const pickle::Value* le = sys_info.root()->get("little_endian"))
      if (le->kind == Kind::Bool && !le->boolean) fail(pos, "the file was written big-endian; only little-endian is supported");
  const pickle::Pickle main = next_pickle("object");
  const pickle::Pickle keys = next_pickle("storage keys");
  if (keys.root()->kind != Kind::List) fail(pos, "the storage key list is not a list");
  // The storages follow in key order: int64 numel, then the data. Element sizes come from the
  // persistent ids (collected from the tensors that use each storage).
  std::map<std::string, std::pair<uint64_t, uint64_t>> where;  // key -> (data offset, bytes)
  std::map<std::string, DType> key_dtype;
  std::vector<const pickle::Value*> todo{main.root()};
  std::set<const pickle::Value*> seen;
  while (!todo.empty()) {  // every Storage value reachable from the object pickle
    const pickle::Value* v = todo.back();
    todo.pop_back();
    if (v == nullptr || !seen.insert(v).second) continue;
    if (v->kind == Kind::Storage) key_dtype.emplace(v->text, v->dtype);
    for (const pickle::Value* c : v->items) todo.push_back(c);
    for (const auto& [k, c] : v->entries) todo.push_back(k), todo.push_back(c);
    for (const pickle::Value* c : {v->storage, v->state, v->args, v->callable}) todo.push_back(c);
  }
  for (const pickle::Value* k : keys.root()->items) {
    if (k->kind != Kind::String) fail(pos, "a storage key is not a string");
    const auto dt = key_dtype.find(k->text);
    if (dt == key_dtype.end()) fail(pos, detail::concat("storage '", k->text, "' is listed but no tensor uses it"));
    if (bytes.size() - pos < 8) fail(pos, detail::concat("storage '", k->text, "': the file ends before its size"));
    int64_t numel = 0;
    std::memcpy(&numel, bytes.data() + pos, 8);
    const uint64_t elem = dtype_size(dt->second);
    if (numel < 0 || uint64_t(numel) > (bytes.size() - pos - 8) / elem)
      fail(pos, detail::concat("storage '", k->text, "' claims ", numel, " elements of ", elem, " bytes; only ",
                               bytes.size() - pos - 8, " bytes are left in the file"));
    where[k->text] = {pos + 8, uint64_t(numel) * elem};
    pos += 8 + size_t(uint64_t(numel) * elem);
  }
  const pickle::Value* model = detail_torch::find_model(main.root());
  GRAFT_CHECK(model != nullptr, "load_torch_checkpoint", source, ": no state_dict found: the pickle holds a ",
              detail_torch::describe_root(main.root()),
              "; expected a dict of tensors, an nn.Module, or a dict holding one under 'state_dict', 'model', ...");
  auto lookup = [&](const std::string& tensor, const std::string& key) {
    const auto it = where.find(key);
    GRAFT_CHECK(it != where.end(), "load_torch_checkpoint", source, ": tensor '", tensor, "': storage '", key,
                "' is not in the file's storage list");
    return detail_torch::StorageBytes{bytes.subspan(it->second.first, it->second.second), it->second.first,
                                      "storage " + key};
  };
  NamedTensors out;
  detail_torch::Loader(source, lookup, std::move(keep_alive)).collect(model, out);
  return out;
}

// Loads from checkpoint bytes held by the caller (tensors get copies), zip or legacy; `source` names
// them in errors.
inline NamedTensors load_torch_checkpoint(std::span<const uint8_t> bytes, const std::string& source) {
  if (detail_torch::is_legacy(bytes)) return load_legacy_torch_checkpoint(bytes, source);
  return load_torch_checkpoint(ZipArchive(bytes, source));
}

// Loads the checkpoint file at `path` (zip or legacy). The file is memory-mapped; tensors borrow the
// map where the storage is 64-byte aligned (torch.save aligns zip storages) and keep it alive;
// writes through them are copy-on-write and never reach the file.
inline NamedTensors load_torch_checkpoint(const std::string& path) {
  {
    std::ifstream f(path, std::ios::binary);
    uint8_t head[4] = {};
    if (f.read(reinterpret_cast<char*>(head), 4) && detail_torch::is_legacy(std::span<const uint8_t>(head, 4))) {
      auto map = MappedFile::open(path);
      const std::span<const uint8_t> bytes(map->data(), map->size());
      return load_legacy_torch_checkpoint(bytes, path, map);
    }
  }
  return load_torch_checkpoint(ZipArchive::open(path));
}

}  // namespace graft::io
