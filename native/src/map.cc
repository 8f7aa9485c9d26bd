// Map handle: element operations (sync: they are single syscalls), batch
// operations (async: they may move megabytes), iteration, pinning.
#include "addon.h"
#include <bpf/btf.h>

#include <unistd.h>

#include <cerrno>
#include <vector>

namespace patronus {

static bool IsPerCpu(uint32_t type) {
  return type == BPF_MAP_TYPE_PERCPU_HASH || type == BPF_MAP_TYPE_PERCPU_ARRAY ||
         type == BPF_MAP_TYPE_LRU_PERCPU_HASH || type == BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE;
}

Napi::Function MapHandle::Init(Napi::Env env) {
  return DefineClass(env, "NativeMap",
                     {
                         InstanceAccessor("info", &MapHandle::Info, nullptr),
                         InstanceAccessor("fd", &MapHandle::GetFd, nullptr),
                         InstanceAccessor("closed", &MapHandle::IsClosed, nullptr),
                         InstanceMethod("btfTypes", &MapHandle::BtfTypes),
                         InstanceMethod("lookup", &MapHandle::Lookup),
                         InstanceMethod("lookupAndDelete", &MapHandle::LookupAndDelete),
                         InstanceMethod("update", &MapHandle::Update),
                         InstanceMethod("delete", &MapHandle::Delete),
                         InstanceMethod("nextKey", &MapHandle::NextKey),
                         InstanceMethod("lookupBatch", &MapHandle::LookupBatch),
                         InstanceMethod("updateBatch", &MapHandle::UpdateBatch),
                         InstanceMethod("deleteBatch", &MapHandle::DeleteBatch),
                         InstanceMethod("pin", &MapHandle::Pin),
                         InstanceMethod("close", &MapHandle::Close),
                     });
}

Napi::Object MapHandle::NewFromFd(Napi::Env env, int fd, const std::string& name) {
  auto* data = env.GetInstanceData<AddonData>();
  return data->mapCtor.New({Napi::Number::New(env, fd), Napi::String::New(env, name)});
}

// new NativeMap(fd, name): takes ownership of fd (internal use only).
MapHandle::MapHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<MapHandle>(info) {
  Napi::Env env = info.Env();
  int fd = (int)ArgU32(info, 0, "fd");
  name_ = info.Length() > 1 && info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "";
  if (FdKind(fd) != "map") {
    close(fd);
    ThrowInvalid(env, "open map", "map " + name_, "file descriptor does not refer to a BPF map");
  }
  uint32_t len = sizeof(info_);
  int err = bpf_obj_get_info_by_fd(fd, &info_, &len);
  if (err) {
    int e = errno;
    close(fd);
    ThrowErrno(env, e, "bpf_obj_get_info_by_fd", "map " + name_);
  }
  if (name_.empty()) name_ = info_.name;
  fd_ = fd;
  percpu_ = IsPerCpu(info_.type);
  ncpus_ = percpu_ ? libbpf_num_possible_cpus() : 1;
}

MapHandle::~MapHandle() {
  if (fd_ >= 0) close(fd_);
}

int MapHandle::Fd(Napi::Env env, const char* op) const {
  if (fd_ < 0) ThrowErrno(env, EBADF, op, "map " + name_, "handle is closed");
  return fd_;
}

size_t MapHandle::ValueBytes() const {
  if (!percpu_) return info_.value_size;
  return ((info_.value_size + 7) / 8 * 8) * ncpus_;
}

void MapHandle::CheckKey(Napi::Env env, const Napi::Buffer<uint8_t>& key, const char* op) const {
  if (key.Length() != info_.key_size)
    ThrowInvalid(env, op, "map " + name_,
                 "key is " + std::to_string(key.Length()) + " bytes, map expects " +
                     std::to_string(info_.key_size));
}

Napi::Value MapHandle::Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  const char* t = libbpf_bpf_map_type_str((bpf_map_type)info_.type);
  o.Set("name", name_);
  o.Set("id", info_.id);
  o.Set("type", t ? t : "unknown");
  o.Set("keySize", info_.key_size);
  o.Set("valueSize", info_.value_size);
  o.Set("maxEntries", info_.max_entries);
  o.Set("flags", info_.map_flags);
  o.Set("perCpu", percpu_);
  o.Set("possibleCpus", ncpus_);
  o.Set("valueBytes", (double)ValueBytes());
  return o;
}

// A C-like name of a BTF type ("struct rule_bits", "__u32", "char[64]"), the
// form scripts/gen-bpf-contract.mjs writes from the object's BTF.
static std::string BtfTypeName(const struct btf* btf, __u32 id, int depth = 0) {
  const struct btf_type* t = btf__type_by_id(btf, id);
  if (!t || depth > 16) return "?";
  const char* name = btf__name_by_offset(btf, t->name_off);
  std::string n = name ? name : "";
  switch (btf_kind(t)) {
    case BTF_KIND_STRUCT: return "struct " + n;
    case BTF_KIND_UNION: return "union " + n;
    case BTF_KIND_ENUM:
    case BTF_KIND_ENUM64: return "enum " + n;
    case BTF_KIND_ARRAY: {
      const struct btf_array* a = btf_array(t);
      return BtfTypeName(btf, a->type, depth + 1) + "[" + std::to_string(a->nelems) + "]";
    }
    case BTF_KIND_PTR: return BtfTypeName(btf, t->type, depth + 1) + " *";
    case BTF_KIND_CONST:
    case BTF_KIND_VOLATILE:
    case BTF_KIND_RESTRICT:
    case BTF_KIND_TYPE_TAG: return BtfTypeName(btf, t->type, depth + 1);
    default: return n;
  }
}

// btfTypes(): the key and value type names the map was created with (from
// the kernel's copy of its BTF), or null when it has none.
Napi::Value MapHandle::BtfTypes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = Fd(env, "btfTypes");
  struct bpf_map_info mi = {};
  __u32 len = sizeof(mi);
  if (bpf_obj_get_info_by_fd(fd, &mi, &len)) ThrowErrno(env, errno, "bpf_obj_get_info_by_fd", "map " + name_);
  if (!mi.btf_id) return env.Null();
  struct btf* btf = btf__load_from_kernel_by_id(mi.btf_id);
  if (!btf) ThrowErrno(env, errno, "btf__load_from_kernel_by_id", "map " + name_ + " BTF " + std::to_string(mi.btf_id));
  Napi::Object o = Napi::Object::New(env);
  o.Set("key", mi.btf_key_type_id ? Napi::Value(Napi::String::New(env, BtfTypeName(btf, mi.btf_key_type_id))) : env.Null());
  o.Set("value", mi.btf_value_type_id ? Napi::Value(Napi::String::New(env, BtfTypeName(btf, mi.btf_value_type_id))) : env.Null());
  btf__free(btf);
  return o;
}

Napi::Value MapHandle::GetFd(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), Fd(info.Env(), "fd"));
}

Napi::Value MapHandle::IsClosed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), fd_ < 0);
}

Napi::Value MapHandle::Lookup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = Fd(env, "bpf_map_lookup_elem");
  auto key = ArgBuffer(info, 0, "key");
  CheckKey(env, key, "bpf_map_lookup_elem");
  auto out = Napi::Buffer<uint8_t>::New(env, ValueBytes());
  if (bpf_map_lookup_elem(fd, key.Data(), out.Data())) {
    if (errno == ENOENT) return env.Null();
    ThrowErrno(env, errno, "bpf_map_lookup_elem", "map " + name_);
  }
  return out;
}

Napi::Value MapHandle::LookupAndDelete(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = Fd(env, "bpf_map_lookup_and_delete_elem");
  auto key = ArgBuffer(info, 0, "key");
  CheckKey(env, key, "bpf_map_lookup_and_delete_elem");
  auto out = Napi::Buffer<uint8_t>::New(env, ValueBytes());
  if (bpf_map_lookup_and_delete_elem(fd, key.Data(), out.Data())) {
    if (errno == ENOENT) return env.Null();
    ThrowErrno(env, errno, "bpf_map_lookup_and_delete_elem", "map " + name_);
  }
  return out;
}

Napi::Value MapHandle::Update(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = Fd(env, "bpf_map_update_elem");
  auto key = ArgBuffer(info, 0, "key");
  auto value = ArgBuffer(info, 1, "value");
  uint32_t flags = info.Length() > 2 ? ArgU32(info, 2, "flags") : 0;
  CheckKey(env, key, "bpf_map_update_elem");
  if (value.Length() != ValueBytes())
    ThrowInvalid(env, "bpf_map_update_elem", "map " + name_,
                 "value is " + std::to_string(value.Length()) + " bytes, map expects " +
                     std::to_string(ValueBytes()) +
                     (percpu_ ? " (" + std::to_string(ncpus_) + " CPUs x " +
                                    std::to_string((info_.value_size + 7) / 8 * 8) + ")"
                              : ""));
  if (bpf_map_update_elem(fd, key.Data(), value.Data(), flags))
    ThrowErrno(env, errno, "bpf_map_update_elem", "map " + name_);
  return env.Undefined();
}

Napi::Value MapHandle::Delete(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = Fd(env, "bpf_map_delete_elem");
  auto key = ArgBuffer(info, 0, "key");
  CheckKey(env, key, "bpf_map_delete_elem");
  if (bpf_map_delete_elem(fd, key.Data())) {
    if (errno == ENOENT) return Napi::Boolean::New(env, false);
    ThrowErrno(env, errno, "bpf_map_delete_elem", "map " + name_);
  }
  return Napi::Boolean::New(env, true);
}

Napi::Value MapHandle::NextKey(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = Fd(env, "bpf_map_get_next_key");
  const void* cur = nullptr;
  if (info.Length() > 0 && info[0].IsBuffer()) {
    auto key = info[0].As<Napi::Buffer<uint8_t>>();
    CheckKey(env, key, "bpf_map_get_next_key");
    cur = key.Data();
  }
  auto out = Napi::Buffer<uint8_t>::New(env, info_.key_size);
  if (bpf_map_get_next_key(fd, cur, out.Data())) {
    if (errno == ENOENT) return env.Null();
    ThrowErrno(env, errno, "bpf_map_get_next_key", "map " + name_);
  }
  return out;
}

// ---- batch operations ----------------------------------------------------

class LookupBatchWorker : public PromiseWorker {
 public:
  LookupBatchWorker(Napi::Env env, OwnedFd fd, std::string name, uint32_t key_size, size_t value_bytes,
                    uint32_t chunk, bool and_delete)
      : PromiseWorker(env), fd_(std::move(fd)), name_(std::move(name)), key_size_(key_size),
        value_bytes_(value_bytes), chunk_(chunk), delete_(and_delete) {}
  void Execute() override {
    std::vector<uint8_t> in_batch(std::max<uint32_t>(key_size_, 8)), out_batch(in_batch.size());
    std::vector<uint8_t> kbuf((size_t)key_size_ * chunk_), vbuf(value_bytes_ * chunk_);
    bool first = true;
    const char* op = delete_ ? "bpf_map_lookup_and_delete_batch" : "bpf_map_lookup_batch";
    for (;;) {
      __u32 count = chunk_;
      LIBBPF_OPTS(bpf_map_batch_opts, opts, .elem_flags = 0, .flags = 0);
      int err = delete_ ? bpf_map_lookup_and_delete_batch(fd_.get(), first ? nullptr : in_batch.data(),
                                                          out_batch.data(), kbuf.data(), vbuf.data(),
                                                          &count, &opts)
                        : bpf_map_lookup_batch(fd_.get(), first ? nullptr : in_batch.data(), out_batch.data(),
                                               kbuf.data(), vbuf.data(), &count, &opts);
      int e = err ? errno : 0;
      if (err && e != ENOENT) {
        failure_ = Failure{e, op, "map " + name_, "", "", false};
        return;
      }
      keys_.insert(keys_.end(), kbuf.begin(), kbuf.begin() + (size_t)count * key_size_);
      values_.insert(values_.end(), vbuf.begin(), vbuf.begin() + (size_t)count * value_bytes_);
      count_ += count;
      if (e == ENOENT) return;
      in_batch = out_batch;
      first = false;
    }
  }
  Napi::Value Resolve(Napi::Env env) override {
    Napi::Object o = Napi::Object::New(env);
    o.Set("count", count_);
    o.Set("keys", Napi::Buffer<uint8_t>::Copy(env, keys_.data(), keys_.size()));
    o.Set("values", Napi::Buffer<uint8_t>::Copy(env, values_.data(), values_.size()));
    return o;
  }

 private:
  OwnedFd fd_;  // this job's own dup: see OwnedFd
  std::string name_;
  uint32_t key_size_;
  size_t value_bytes_;
  uint32_t chunk_;
  bool delete_;
  std::vector<uint8_t> keys_, values_;
  uint32_t count_ = 0;
};

// lookupBatch({ chunk?, delete? }): every entry of the map.
Napi::Value MapHandle::LookupBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "bpf_map_lookup_batch";
  int fd = Fd(env, op);
  uint32_t chunk = 256;
  bool del = false;
  if (info.Length() > 0 && info[0].IsObject()) {
    Napi::Object o = info[0].As<Napi::Object>();
    if (o.Has("chunk")) chunk = o.Get("chunk").As<Napi::Number>().Uint32Value();
    if (o.Has("delete")) del = o.Get("delete").ToBoolean();
  }
  if (chunk == 0) chunk = 1;
  auto* w = new LookupBatchWorker(env, DupForJob(env, fd, op, "map " + name_), name_, info_.key_size, ValueBytes(),
                                  chunk, del);
  w->Queue();
  return w->Promise();
}

// Writes or deletes `count` entries with one batch syscall and reports how
// many the kernel really processed. On failure the kernel stores the index of
// the failing entry in `count`; when it refuses the call before looking at any
// entry (bad flags, missing command) it leaves `count` as we passed it, and
// since a call that processed every entry cannot fail, count == requested on
// failure means none was written.
class WriteBatchWorker : public PromiseWorker {
 public:
  WriteBatchWorker(Napi::Env env, OwnedFd fd, std::string name, Napi::Buffer<uint8_t> keys,
                   std::optional<Napi::Buffer<uint8_t>> values, uint32_t count, uint64_t flags)
      : PromiseWorker(env), fd_(std::move(fd)), name_(std::move(name)), count_(count), flags_(flags) {
    keys_ref_ = Napi::Persistent(keys);
    kdata_ = keys.Data();
    if (values) {
      values_ref_ = Napi::Persistent(*values);
      vdata_ = values->Data();
    }
  }
  void Execute() override {
    __u32 n = count_;
    LIBBPF_OPTS(bpf_map_batch_opts, opts, .elem_flags = flags_, .flags = 0);
    int err = vdata_ ? bpf_map_update_batch(fd_.get(), kdata_, vdata_, &n, &opts)
                     : bpf_map_delete_batch(fd_.get(), kdata_, &n, &opts);
    if (!err) {
      done_ = n;
      return;
    }
    int e = errno;
    bool refused = n >= count_;
    done_ = refused ? 0 : n;
    const char* verb = vdata_ ? "written" : "deleted";
    std::string where = refused ? "the kernel refused the batch before any entry"
                                : "entry " + std::to_string(n) + " failed";
    failure_ = Failure{e, vdata_ ? "bpf_map_update_batch" : "bpf_map_delete_batch", "map " + name_,
                       where + "; " + std::to_string(done_) + " of " + std::to_string(count_) + " entries " + verb,
                       "", false, (double)done_};
  }
  Napi::Value Resolve(Napi::Env env) override { return Napi::Number::New(env, done_); }

 private:
  OwnedFd fd_;  // this job's own dup: see OwnedFd
  std::string name_;
  uint32_t count_;
  uint64_t flags_;
  Napi::Reference<Napi::Buffer<uint8_t>> keys_ref_, values_ref_;
  const uint8_t* kdata_ = nullptr;
  const uint8_t* vdata_ = nullptr;
  uint32_t done_ = 0;
};

// updateBatch(keys, values, flags?) -> Promise<number>
Napi::Value MapHandle::UpdateBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = Fd(env, "bpf_map_update_batch");
  auto keys = ArgBuffer(info, 0, "keys");
  auto values = ArgBuffer(info, 1, "values");
  uint32_t flags = info.Length() > 2 ? ArgU32(info, 2, "flags") : 0;
  if (keys.Length() % info_.key_size)
    ThrowInvalid(env, "bpf_map_update_batch", "map " + name_,
                 "keys buffer is not a multiple of the key size " + std::to_string(info_.key_size));
  uint32_t count = keys.Length() / info_.key_size;
  if (values.Length() != count * ValueBytes())
    ThrowInvalid(env, "bpf_map_update_batch", "map " + name_,
                 "values buffer is " + std::to_string(values.Length()) + " bytes, " + std::to_string(count) +
                     " entries need " + std::to_string(count * ValueBytes()));
  auto* w = new WriteBatchWorker(env, DupForJob(env, fd, "bpf_map_update_batch", "map " + name_), name_, keys, values,
                                 count, flags);
  w->Queue();
  return w->Promise();
}

// deleteBatch(keys) -> Promise<number>
Napi::Value MapHandle::DeleteBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = Fd(env, "bpf_map_delete_batch");
  auto keys = ArgBuffer(info, 0, "keys");
  if (keys.Length() % info_.key_size)
    ThrowInvalid(env, "bpf_map_delete_batch", "map " + name_,
                 "keys buffer is not a multiple of the key size " + std::to_string(info_.key_size));
  auto* w = new WriteBatchWorker(env, DupForJob(env, fd, "bpf_map_delete_batch", "map " + name_), name_, keys,
                                 std::nullopt, keys.Length() / info_.key_size, 0);
  w->Queue();
  return w->Promise();
}

Napi::Value MapHandle::Pin(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = Fd(env, "bpf_obj_pin");
  std::string path = ArgString(info, 0, "pin path");
  if (bpf_obj_pin(fd, path.c_str())) ThrowErrno(env, errno, "bpf_obj_pin", "map " + name_, path);
  return env.Undefined();
}

Napi::Value MapHandle::Close(const Napi::CallbackInfo& info) {
  if (fd_ >= 0) {
    close(fd_);
    fd_ = -1;
  }
  return info.Env().Undefined();
}

}  // namespace patronus
