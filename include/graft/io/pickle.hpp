// graft/io/pickle.hpp - a pickle reader for the subset torch.save writes. It never executes anything.
//
// Not part of <graft/graft.hpp>: include it on purpose (graft/io/torch_checkpoint.hpp does).
//
//   graft::io::pickle::Pickle p = graft::io::pickle::unpickle(bytes, "model.pth:archive/data.pkl");
//   const graft::io::pickle::Value* root = p.root();   // e.g. a Dict of name -> Tensor
//
// Opcodes (what torch 1.13's protocol-2 pickler emits, plus their close relatives):
//   PROTO FRAME STOP MARK POP POP_MARK DUP, EMPTY_DICT EMPTY_LIST EMPTY_TUPLE TUPLE TUPLE1-3,
//   BININT BININT1 BININT2 LONG1, BINFLOAT, NONE NEWTRUE NEWFALSE,
//   BINUNICODE SHORT_BINUNICODE BINUNICODE8 BINSTRING SHORT_BINSTRING BINBYTES SHORT_BINBYTES,
//   BINPUT LONG_BINPUT BINGET LONG_BINGET MEMOIZE, GLOBAL STACK_GLOBAL, REDUCE BUILD NEWOBJ,
//   SETITEM SETITEMS APPEND APPENDS, BINPERSID.
// Any other opcode throws naming the opcode byte and its offset.
//
// Never executing anything: GLOBAL / STACK_GLOBAL push a symbolic class reference (Kind::Global).
// REDUCE of a few known callables is interpreted:
//   collections.OrderedDict()                          -> Kind::Dict (insertion order kept)
//   torch._utils._rebuild_tensor_v2 / _rebuild_tensor  -> Kind::Tensor (storage, offset, sizes, strides)
//   torch._utils._rebuild_parameter(_with_state)       -> the Tensor it wraps
// A persistent id ('storage', torch.<T>Storage, key, location, numel[, None]) (BINPERSID) becomes
// Kind::Storage with its dtype; a legacy ('module', class, file, source) id becomes the class reference. Every other REDUCE or NEWOBJ becomes an opaque Kind::Object that
// keeps its callable, its arguments, BUILD's state and any items set on it, so the tensors inside a
// whole pickled nn.Module (NEWOBJ + BUILD with a __dict__) can still be found.
//
// Contract: unpickle() returns the value STOP leaves on the stack, or throws graft::Error
// "pickle: <source>: <OPCODE> at byte offset N: <what>" for an unsupported opcode, a length past the
// end of the data, a memo index never stored, a stack underflow, a missing MARK, marks nested deeper
// than kMaxMarkDepth, an integer wider than 64 bits, or a malformed tensor / persistent id. Values
// live in an arena owned by the Pickle (pickles can be cyclic), so nothing leaks. Memory use is
// linear in the input size.
#pragma once
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "graft/core/dtype.hpp"
#include "graft/core/error.hpp"

namespace graft::io::pickle {

enum class Kind : uint8_t { None, Bool, Int, Float, String, Bytes, Tuple, List, Dict, Global, Object, Storage, Tensor };

inline const char* kind_name(Kind k) {
  switch (k) {
    case Kind::None: return "None";
    case Kind::Bool: return "bool";
    case Kind::Int: return "int";
    case Kind::Float: return "float";
    case Kind::String: return "str";
    case Kind::Bytes: return "bytes";
    case Kind::Tuple: return "tuple";
    case Kind::List: return "list";
    case Kind::Dict: return "dict";
    case Kind::Global: return "class reference";
    case Kind::Object: return "object";
    case Kind::Storage: return "storage";
    case Kind::Tensor: return "tensor";
  }
  return "?";
}

inline constexpr size_t kMaxMarkDepth = 1024;
inline constexpr int64_t kMaxStorageNumel = int64_t(1) << 48;

struct Value {
  Kind kind = Kind::None;
  bool boolean = false;  // Bool; Tensor: requires_grad
  int64_t integer = 0;   // Int; Storage: numel; Tensor: storage offset (elements)
  double real = 0;       // Float
  std::string text;      // String, Bytes; Global: module; Storage: key
  std::string name;      // Global: name; Storage: storage type (e.g. "FloatStorage"), location in `location`
  std::string location;  // Storage: device string ("cpu", "cuda:0")
  DType dtype = DType::Float32;                     // Storage
  std::vector<Value*> items;                        // Tuple, List; Object: appended items
  std::vector<std::pair<Value*, Value*>> entries;   // Dict (in order); Object: items set on it
  Value* callable = nullptr;                        // Object: class or function reference
  Value* args = nullptr;                            // Object: argument tuple
  Value* state = nullptr;                           // Object, Dict: the state BUILD gave it
  Value* storage = nullptr;                         // Tensor
  std::vector<int64_t> sizes, strides;              // Tensor

  bool is_global(std::string_view module, std::string_view qualname) const {
    return kind == Kind::Global && text == module && name == qualname;
  }
  // For a Dict (or an Object's set items): the value under string key `key` (the last one, as in
  // Python), or nullptr.
  const Value* get(std::string_view key) const {
    const Value* found = nullptr;
    for (const auto& [k, v] : entries)
      if (k->kind == Kind::String && k->text == key) found = v;
    return found;
  }
};

// The result of unpickle(): the root value and the arena that owns every value.
class Pickle {
 public:
  const Value* root() const { return root_; }
  const std::string& source() const { return source_; }
  // Bytes consumed: the offset just past STOP (legacy torch files put several pickles back to back).
  size_t end_offset() const { return end_; }

 private:
  friend class Unpickler;
  std::vector<std::unique_ptr<Value>> arena_;
  Value* root_ = nullptr;
  std::string source_;
  size_t end_ = 0;
};

// storage type name (torch.<name>) -> DType; false when Graft has no such dtype.
inline bool storage_dtype(std::string_view type, DType& out) {
  static const std::pair<std::string_view, DType> table[] = {
      {"FloatStorage", DType::Float32}, {"DoubleStorage", DType::Float64}, {"HalfStorage", DType::Float16},
      {"BFloat16Storage", DType::BFloat16}, {"IntStorage", DType::Int32}, {"LongStorage", DType::Int64},
      {"BoolStorage", DType::Bool}};
  for (const auto& [n, d] : table)
    if (n == type) {
      out = d;
      return true;
    }
  return false;
}

class Unpickler {
 public:
  Unpickler(std::span<const uint8_t> bytes, std::string source) : bytes_(bytes) { result_.source_ = std::move(source); }

  Pickle run() {
    while (true) {
      if (pos_ >= bytes_.size()) fail_at(pos_, "end of data", "no STOP opcode before the end of the data");
      op_offset_ = pos_;
      op_ = bytes_[pos_++];
      switch (op_) {
        case 0x80: {  // PROTO
          const uint8_t v = read_u8();
          if (v > 5) fail(detail::concat("unknown protocol version ", int(v)));
          break;
        }
        case 0x95: {  // FRAME: a length hint, the opcodes follow inline
          const uint64_t n = read_le(8);
          if (n > bytes_.size() - pos_) fail(detail::concat("frame length ", n, " runs past the end (", bytes_.size() - pos_, " bytes left)"));
          break;
        }
        case '.': {  // STOP
          result_.root_ = pop();
          result_.end_ = pos_;
          return std::move(result_);
        }
        case '(':  // MARK
          if (marks_.size() >= kMaxMarkDepth) fail(detail::concat("marks nested deeper than ", kMaxMarkDepth));
          marks_.push_back(stack_.size());
          break;
        case '0': pop(); break;                      // POP
        case '1': pop_mark(); break;                 // POP_MARK
        case '2': push(peek()); break;               // DUP
        case '}': push(make(Kind::Dict)); break;     // EMPTY_DICT
        case ']': push(make(Kind::List)); break;     // EMPTY_LIST
        case ')': push(make(Kind::Tuple)); break;    // EMPTY_TUPLE
        case 't': {                                  // TUPLE
          Value* t = make(Kind::Tuple);
          t->items = pop_mark();
          push(t);
          break;
        }
        case 0x85: case 0x86: case 0x87: {  // TUPLE1..3
          const size_t n = size_t(op_ - 0x84);
          Value* t = make(Kind::Tuple);
          t->items.resize(n);
          for (size_t i = n; i-- > 0;) t->items[i] = pop();
          push(t);
          break;
        }
        case 'J': push_int(int32_t(uint32_t(read_le(4)))); break;  // BININT
        case 'K': push_int(read_u8()); break;                      // BININT1
        case 'M': push_int(int64_t(read_le(2))); break;            // BININT2
        case 0x8a: {                                               // LONG1
          const uint8_t n = read_u8();
          if (n > 8) fail(detail::concat("integer of ", int(n), " bytes does not fit in 64 bits"));
          need(n, "integer");
          uint64_t u = 0;
          for (uint8_t i = 0; i < n; ++i) u |= uint64_t(bytes_[pos_ + i]) << (8 * i);
          if (n > 0 && n < 8 && (bytes_[pos_ + n - 1] & 0x80)) u |= ~uint64_t(0) << (8 * n);  // sign-extend
          pos_ += n;
          push_int(int64_t(u));
          break;
        }
        case 'G': {  // BINFLOAT: big-endian IEEE double
          need(8, "float");
          uint64_t u = 0;
          for (int i = 0; i < 8; ++i) u = (u << 8) | bytes_[pos_ + i];
          pos_ += 8;
          Value* v = make(Kind::Float);
          std::memcpy(&v->real, &u, 8);
          push(v);
          break;
        }
        case 'N': push(make(Kind::None)); break;  // NONE
        case 0x88: case 0x89: {                   // NEWTRUE, NEWFALSE
          Value* v = make(Kind::Bool);
          v->boolean = op_ == 0x88;
          push(v);
          break;
        }
        case 'X': push_string(Kind::String, read_le(4)); break;   // BINUNICODE
        case 0x8c: push_string(Kind::String, read_u8()); break;   // SHORT_BINUNICODE
        case 0x8d: push_string(Kind::String, read_le(8)); break;  // BINUNICODE8
        case 'T': {                                               // BINSTRING (signed length)
          const int32_t n = int32_t(uint32_t(read_le(4)));
          if (n < 0) fail(detail::concat("negative string length ", n));
          push_string(Kind::String, uint64_t(n));
          break;
        }
        case 'U': push_string(Kind::String, read_u8()); break;  // SHORT_BINSTRING
        case 'B': push_string(Kind::Bytes, read_le(4)); break;  // BINBYTES
        case 'C': push_string(Kind::Bytes, read_u8()); break;   // SHORT_BINBYTES
        case 'q': memo_[read_u8()] = peek(); break;                // BINPUT
        case 'r': memo_[uint32_t(read_le(4))] = peek(); break;     // LONG_BINPUT
        case 0x94: {                                               // MEMOIZE
          Value* top = peek();
          memo_[uint32_t(memo_.size())] = top;
          break;
        }
        case 'h': push(memo_get(read_u8())); break;              // BINGET
        case 'j': push(memo_get(uint32_t(read_le(4)))); break;   // LONG_BINGET
        case 'c': {                                              // GLOBAL "module\nname\n"
          Value* g = make(Kind::Global);
          g->text = read_line("module name");
          g->name = read_line("class name");
          push(g);
          break;
        }
        case 0x93: {  // STACK_GLOBAL
          Value* name = pop();
          Value* module = pop();
          if (module->kind != Kind::String || name->kind != Kind::String)
            fail(detail::concat("expects two str, got ", kind_name(module->kind), " and ", kind_name(name->kind)));
          Value* g = make(Kind::Global);
          g->text = module->text;
          g->name = name->text;
          push(g);
          break;
        }
        case 'R': {  // REDUCE
          Value* args = pop();
          Value* fn = pop();
          if (args->kind != Kind::Tuple) fail(detail::concat("arguments are a ", kind_name(args->kind), ", not a tuple"));
          push(reduce(fn, args));
          break;
        }
        case 0x81: {  // NEWOBJ
          Value* args = pop();
          Value* cls = pop();
          if (args->kind != Kind::Tuple) fail(detail::concat("arguments are a ", kind_name(args->kind), ", not a tuple"));
          Value* o = make(Kind::Object);
          o->callable = cls;
          o->args = args;
          push(o);
          break;
        }
        case 'b': {  // BUILD
          Value* state = pop();
          Value* obj = peek();
          if (obj->kind == Kind::Object || obj->kind == Kind::Dict || obj->kind == Kind::Tensor)
            obj->state = state;  // a Tensor's BUILD state (Python attributes) carries no data we use
          else
            fail(detail::concat("cannot set state on a ", kind_name(obj->kind)));
          break;
        }
        case 's': {  // SETITEM
          Value* v = pop();
          Value* k = pop();
          container_for_items(Kind::Dict)->entries.emplace_back(k, v);
          break;
        }
        case 'u': {  // SETITEMS
          std::vector<Value*> kv = pop_mark();
          if (kv.size() % 2) fail(detail::concat("odd number of items (", kv.size(), ") after MARK"));
          Value* d = container_for_items(Kind::Dict);
          for (size_t i = 0; i < kv.size(); i += 2) d->entries.emplace_back(kv[i], kv[i + 1]);
          break;
        }
        case 'a': {  // APPEND
          Value* v = pop();
          container_for_items(Kind::List)->items.push_back(v);
          break;
        }
        case 'e': {  // APPENDS
          std::vector<Value*> vs = pop_mark();
          Value* l = container_for_items(Kind::List);
          l->items.insert(l->items.end(), vs.begin(), vs.end());
          break;
        }
        case 'Q': push(persistent_storage(pop())); break;  // BINPERSID
        default:
          fail(detail::concat("unsupported opcode 0x", hex2(op_),
                              (op_ >= 0x20 && op_ < 0x7f) ? detail::concat(" ('", char(op_), "')") : std::string()));
      }
    }
  }

 private:
  static std::string hex2(uint8_t b) {
    const char* d = "0123456789abcdef";
    return {d[b >> 4], d[b & 15]};
  }
  [[noreturn]] void fail_at(size_t offset, const std::string& opname, const std::string& what) const {
    throw Error(detail::concat("pickle: ", result_.source_, ": ", opname, " at byte offset ", offset, ": ", what));
  }
  [[noreturn]] void fail(const std::string& what) const {
    fail_at(op_offset_, detail::concat("opcode 0x", hex2(op_)), what);
  }

  Value* make(Kind k) {
    result_.arena_.push_back(std::make_unique<Value>());
    result_.arena_.back()->kind = k;
    return result_.arena_.back().get();
  }
  void push(Value* v) { stack_.push_back(v); }
  void push_int(int64_t i) {
    Value* v = make(Kind::Int);
    v->integer = i;
    push(v);
  }
  size_t base() const { return marks_.empty() ? 0 : marks_.back(); }
  Value* pop() {
    if (stack_.size() <= base())
      fail(marks_.empty() ? "stack underflow (the stack is empty)" : "stack underflow (nothing above the last MARK)");
    Value* v = stack_.back();
    stack_.pop_back();
    return v;
  }
  Value* peek() const {
    if (stack_.size() <= base()) fail("stack underflow (needs a value on the stack)");
    return stack_.back();
  }
  std::vector<Value*> pop_mark() {
    if (marks_.empty()) fail("no MARK on the stack");
    const size_t m = marks_.back();
    marks_.pop_back();
    std::vector<Value*> out(stack_.begin() + std::ptrdiff_t(m), stack_.end());
    stack_.resize(m);
    return out;
  }
  // The value SETITEM(S) / APPEND(S) add to: a Dict (or List), or an opaque Object that keeps them.
  Value* container_for_items(Kind want) {
    Value* c = peek();
    if (c->kind == want || c->kind == Kind::Object) return c;
    fail(detail::concat("expects a ", kind_name(want), " below the items, got a ", kind_name(c->kind)));
  }

  void need(uint64_t n, const char* what) const {
    if (n > bytes_.size() - pos_)
      fail(detail::concat(what, " of ", n, " bytes runs past the end of the data (", bytes_.size() - pos_, " bytes left)"));
  }
  uint8_t read_u8() {
    need(1, "argument");
    return bytes_[pos_++];
  }
  uint64_t read_le(int n) {
    need(uint64_t(n), "argument");
    uint64_t u = 0;
    for (int i = 0; i < n; ++i) u |= uint64_t(bytes_[pos_ + size_t(i)]) << (8 * i);
    pos_ += size_t(n);
    return u;
  }
  void push_string(Kind k, uint64_t n) {
    need(n, k == Kind::Bytes ? "bytes" : "string");
    Value* v = make(k);
    v->text.assign(reinterpret_cast<const char*>(bytes_.data() + pos_), size_t(n));
    pos_ += size_t(n);
    push(v);
  }
  std::string read_line(const char* what) {
    const size_t limit = std::min(bytes_.size(), pos_ + 4096);
    for (size_t i = pos_; i < limit; ++i)
      if (bytes_[i] == '\n') {
        std::string s(reinterpret_cast<const char*>(bytes_.data() + pos_), i - pos_);
        pos_ = i + 1;
        return s;
      }
    fail(detail::concat(what, " has no newline within 4096 bytes or before the end of the data"));
  }
  Value* memo_get(uint32_t i) const {
    auto it = memo_.find(i);
    if (it == memo_.end()) fail(detail::concat("memo index ", i, " out of range (never stored; memo holds ", memo_.size(), " values)"));
    return it->second;
  }

  static bool is_int_tuple(const Value* v) {
    if (v->kind != Kind::Tuple) return false;
    for (const Value* x : v->items)
      if (x->kind != Kind::Int) return false;
    return true;
  }

  Value* reduce(Value* fn, Value* args) {
    const auto& a = args->items;
    if (fn->is_global("collections", "OrderedDict")) {
      Value* d = make(Kind::Dict);
      if (a.empty()) return d;
      // OrderedDict([(k, v), ...])
      if (a.size() != 1 || (a[0]->kind != Kind::List && a[0]->kind != Kind::Tuple))
        fail("collections.OrderedDict expects () or one list of pairs");
      for (const Value* p : a[0]->items) {
        if ((p->kind != Kind::Tuple && p->kind != Kind::List) || p->items.size() != 2)
          fail("collections.OrderedDict expects a list of (key, value) pairs");
        d->entries.emplace_back(p->items[0], p->items[1]);
      }
      return d;
    }
    if (fn->is_global("torch._utils", "_rebuild_tensor_v2") || fn->is_global("torch._utils", "_rebuild_tensor")) {
      // (storage, storage_offset, size, stride[, requires_grad, backward_hooks[, metadata]])
      const std::string f = "torch._utils." + fn->name;
      if (a.size() < 4) fail(detail::concat(f, " expects at least 4 arguments, got ", a.size()));
      if (a[0]->kind != Kind::Storage) fail(detail::concat(f, ": argument 0 is a ", kind_name(a[0]->kind), ", not a storage"));
      if (a[1]->kind != Kind::Int) fail(detail::concat(f, ": storage offset is a ", kind_name(a[1]->kind), ", not an int"));
      if (!is_int_tuple(a[2]) || !is_int_tuple(a[3]))
        fail(detail::concat(f, ": size and stride must be tuples of ints"));
      if (a[2]->items.size() != a[3]->items.size())
        fail(detail::concat(f, ": size has ", a[2]->items.size(), " dims but stride has ", a[3]->items.size()));
      Value* t = make(Kind::Tensor);
      t->storage = a[0];
      t->integer = a[1]->integer;
      for (const Value* x : a[2]->items) t->sizes.push_back(x->integer);
      for (const Value* x : a[3]->items) t->strides.push_back(x->integer);
      t->boolean = a.size() > 4 && a[4]->kind == Kind::Bool && a[4]->boolean;
      return t;
    }
    if (fn->is_global("torch._utils", "_rebuild_parameter") ||
        fn->is_global("torch._utils", "_rebuild_parameter_with_state")) {
      if (a.empty() || a[0]->kind != Kind::Tensor)
        fail(detail::concat("torch._utils.", fn->name, " expects a tensor as its first argument"));
      a[0]->boolean = a.size() > 1 && a[1]->kind == Kind::Bool && a[1]->boolean;
      return a[0];
    }
    Value* o = make(Kind::Object);  // anything else: kept, never called
    o->callable = fn;
    o->args = args;
    return o;
  }

  // ('storage', torch.<T>Storage, key, location, numel) -> Kind::Storage. Legacy (pre-1.6) files add
  // a sixth field, view_metadata, which torch >= 1.0 writes as None (anything else is refused).
  Value* persistent_storage(const Value* pid) {
    // Legacy files saving a whole module replace each module class by ('module', class, source file,
    // source text) so torch can warn when the source changed; the class reference is what matters.
    if (pid->kind == Kind::Tuple && pid->items.size() == 4 && pid->items[0]->kind == Kind::String &&
        pid->items[0]->text == "module" && pid->items[1]->kind == Kind::Global)
      return const_cast<Value*>(pid->items[1]);
    if (pid->kind != Kind::Tuple || (pid->items.size() != 5 && pid->items.size() != 6) ||
        pid->items[0]->kind != Kind::String || pid->items[0]->text != "storage")
      fail("persistent id is not ('storage', type, key, location, numel)");
    if (pid->items.size() == 6 && pid->items[5]->kind != Kind::None)
      fail("legacy persistent id with a storage view (view_metadata is not None) is not supported");
    const auto& it = pid->items;
    if (it[1]->kind != Kind::Global || it[2]->kind != Kind::String || it[3]->kind != Kind::String ||
        it[4]->kind != Kind::Int)
      fail(detail::concat("persistent id fields have types (", kind_name(it[1]->kind), ", ", kind_name(it[2]->kind),
                          ", ", kind_name(it[3]->kind), ", ", kind_name(it[4]->kind),
                          "), expected (class reference, str, str, int)"));
    Value* s = make(Kind::Storage);
    s->text = it[2]->text;
    s->name = it[1]->name;
    s->location = it[3]->text;
    s->integer = it[4]->integer;
    if (it[1]->text != "torch" || !storage_dtype(it[1]->name, s->dtype))
      fail(detail::concat("storage '", s->text, "' has unsupported storage type ", it[1]->text, ".", it[1]->name,
                          " (supported: Float, Double, Half, BFloat16, Int, Long, Bool)"));
    if (s->integer < 0 || s->integer > kMaxStorageNumel)
      fail(detail::concat("storage '", s->text, "' has absurd element count ", s->integer));
    return s;
  }

  std::span<const uint8_t> bytes_;
  size_t pos_ = 0;
  size_t op_offset_ = 0;
  uint8_t op_ = 0;
  std::vector<Value*> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint32_t, Value*> memo_;
  Pickle result_;
};

// Unpickles the pickle that starts at bytes[0] (trailing bytes are left alone: see end_offset()).
inline Pickle unpickle(std::span<const uint8_t> bytes, std::string source) {
  return Unpickler(bytes, std::move(source)).run();
}

}  // namespace graft::io::pickle
