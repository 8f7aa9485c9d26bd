// BPF object: open an ELF file, adjust maps before load, load (off the JS
// thread, with the verifier log kept on failure), list and hand out
// program and map handles.
#include "addon.h"

#include <unistd.h>

#include <cerrno>
#include <mutex>

namespace patronus {

// libbpf's print callback is process-global; loads are serialised so the
// capture sees only its own object's messages.
static std::mutex load_mutex;

Napi::Function ObjectHandle::Init(Napi::Env env) {
  return DefineClass(env, "NativeObject",
                     {
                         InstanceMethod("setMapMaxEntries", &ObjectHandle::SetMapMaxEntries),
                         InstanceMethod("setMapPinPath", &ObjectHandle::SetMapPinPath),
                         InstanceMethod("setMapInitialValue", &ObjectHandle::SetMapInitialValue),
                         InstanceMethod("reuseMapFd", &ObjectHandle::ReuseMapFd),
                         InstanceMethod("load", &ObjectHandle::Load),
                         InstanceMethod("programs", &ObjectHandle::Programs),
                         InstanceMethod("maps", &ObjectHandle::Maps),
                         InstanceMethod("map", &ObjectHandle::Map),
                         InstanceMethod("program", &ObjectHandle::Program),
                         InstanceMethod("close", &ObjectHandle::Close),
                         InstanceAccessor("loaded", &ObjectHandle::IsLoaded, nullptr),
                     });
}

ObjectHandle::ObjectHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ObjectHandle>(info) {
  Napi::Env env = info.Env();
  path_ = ArgString(info, 0, "path");
  LogCapture cap;
  bpf_object* obj = bpf_object__open_file(path_.c_str(), nullptr);
  int err = libbpf_get_error(obj);
  if (err || !obj) {
    Failure f{-err ? -err : errno, "bpf_object__open_file", "object " + path_, "", "", false};
    if (!cap.text.empty()) f.message = cap.text;
    Throw(env, f);
  }
  obj_ = obj;
}

ObjectHandle::~ObjectHandle() {
  if (obj_ && !loading_) bpf_object__close(obj_);
}

bpf_object* ObjectHandle::Require(Napi::Env env, const char* op) const {
  if (!obj_) ThrowErrno(env, EBADF, op, "object " + path_, "handle is closed");
  if (loading_) ThrowErrno(env, EBUSY, op, "object " + path_, "a load is in progress");
  return obj_;
}

bpf_map* ObjectHandle::RequireMap(Napi::Env env, const std::string& name, const char* op) const {
  bpf_object* obj = Require(env, op);
  bpf_map* m = bpf_object__find_map_by_name(obj, name.c_str());
  if (!m) ThrowErrno(env, ENOENT, op, "map " + name, "no map of that name in " + path_);
  return m;
}

Napi::Value ObjectHandle::SetMapMaxEntries(const Napi::CallbackInfo& info) {
  std::string name = ArgString(info, 0, "map name");
  uint32_t n = ArgU32(info, 1, "max entries");
  bpf_map* m = RequireMap(info.Env(), name, "bpf_map__set_max_entries");
  if (loaded_) ThrowErrno(info.Env(), EBUSY, "bpf_map__set_max_entries", "map " + name, "object already loaded");
  int err = bpf_map__set_max_entries(m, n);
  if (err) ThrowErrno(info.Env(), err, "bpf_map__set_max_entries", "map " + name);
  return info.Env().Undefined();
}

Napi::Value ObjectHandle::SetMapPinPath(const Napi::CallbackInfo& info) {
  std::string name = ArgString(info, 0, "map name");
  bpf_map* m = RequireMap(info.Env(), name, "bpf_map__set_pin_path");
  const char* p = nullptr;
  std::string path;
  if (info.Length() > 1 && info[1].IsString()) {
    path = info[1].As<Napi::String>().Utf8Value();
    p = path.c_str();
  }
  int err = bpf_map__set_pin_path(m, p);
  if (err) ThrowErrno(info.Env(), err, "bpf_map__set_pin_path", "map " + name, path);
  return info.Env().Undefined();
}

Napi::Value ObjectHandle::SetMapInitialValue(const Napi::CallbackInfo& info) {
  std::string name = ArgString(info, 0, "map name");
  auto buf = ArgBuffer(info, 1, "initial value");
  bpf_map* m = RequireMap(info.Env(), name, "bpf_map__set_initial_value");
  size_t size = 0;
  bpf_map__initial_value(m, &size);
  if (size != buf.Length())
    ThrowInvalid(info.Env(), "bpf_map__set_initial_value", "map " + name,
                 "value is " + std::to_string(buf.Length()) + " bytes, section holds " + std::to_string(size));
  int err = bpf_map__set_initial_value(m, buf.Data(), buf.Length());
  if (err) ThrowErrno(info.Env(), err, "bpf_map__set_initial_value", "map " + name);
  return info.Env().Undefined();
}

Napi::Value ObjectHandle::ReuseMapFd(const Napi::CallbackInfo& info) {
  std::string name = ArgString(info, 0, "map name");
  bpf_map* m = RequireMap(info.Env(), name, "bpf_map__reuse_fd");
  if (info.Length() < 2 || !info[1].IsObject())
    throw Napi::TypeError::New(info.Env(), "map handle required");
  MapHandle* h = Napi::ObjectWrap<MapHandle>::Unwrap(info[1].As<Napi::Object>());
  int err = bpf_map__reuse_fd(m, h->Fd(info.Env(), "bpf_map__reuse_fd"));
  if (err) ThrowErrno(info.Env(), err, "bpf_map__reuse_fd", "map " + name);
  return info.Env().Undefined();
}

class LoadWorker : public PromiseWorker {
 public:
  LoadWorker(Napi::Env env, ObjectHandle* owner, Napi::Object self)
      : PromiseWorker(env), owner_(owner), obj_(owner->obj_), path_(owner->path_) {
    self_ = Napi::Persistent(self);
  }
  void Execute() override {
    std::lock_guard<std::mutex> lock(load_mutex);
    LogCapture cap;
    int err = bpf_object__load(obj_);
    if (err) {
      Failure f{-err, "bpf_object__load", "object " + path_, "", "", false};
      f.log = cap.text;
      // libbpf tags the kernel's log between these markers on a rejected program.
      f.verifier = cap.text.find("BEGIN PROG LOAD LOG") != std::string::npos;
      if (f.verifier) f.message = "the verifier rejected a program (see .log)";
      failure_ = f;
    }
  }
  void OnOK() override {
    owner_->loading_ = false;
    if (!failure_) owner_->loaded_ = true;
    PromiseWorker::OnOK();
  }

 private:
  ObjectHandle* owner_;
  bpf_object* obj_;
  std::string path_;
  Napi::ObjectReference self_;  // keeps the owner alive while loading
};

Napi::Value ObjectHandle::Load(const Napi::CallbackInfo& info) {
  Require(info.Env(), "bpf_object__load");
  if (loaded_) ThrowErrno(info.Env(), EALREADY, "bpf_object__load", "object " + path_, "already loaded");
  loading_ = true;
  auto* w = new LoadWorker(info.Env(), this, info.This().As<Napi::Object>());
  w->Queue();
  return w->Promise();
}

static const char* ProgTypeName(bpf_prog_type t) {
  const char* n = libbpf_bpf_prog_type_str(t);
  return n ? n : "unknown";
}

Napi::Value ObjectHandle::Programs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bpf_object* obj = Require(env, "programs");
  Napi::Array out = Napi::Array::New(env);
  uint32_t i = 0;
  bpf_program* p;
  bpf_object__for_each_program(p, obj) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", bpf_program__name(p));
    o.Set("section", bpf_program__section_name(p));
    o.Set("type", ProgTypeName(bpf_program__type(p)));
    out.Set(i++, o);
  }
  return out;
}

Napi::Value ObjectHandle::Maps(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bpf_object* obj = Require(env, "maps");
  Napi::Array out = Napi::Array::New(env);
  uint32_t i = 0;
  bpf_map* m;
  bpf_object__for_each_map(m, obj) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", bpf_map__name(m));
    const char* t = libbpf_bpf_map_type_str(bpf_map__type(m));
    o.Set("type", t ? t : "unknown");
    o.Set("keySize", bpf_map__key_size(m));
    o.Set("valueSize", bpf_map__value_size(m));
    o.Set("maxEntries", bpf_map__max_entries(m));
    o.Set("internal", bpf_map__is_internal(m));
    const char* pin = bpf_map__pin_path(m);
    if (pin) o.Set("pinPath", pin);
    o.Set("pinned", bpf_map__is_pinned(m));
    out.Set(i++, o);
  }
  return out;
}

Napi::Value ObjectHandle::Map(const Napi::CallbackInfo& info) {
  std::string name = ArgString(info, 0, "map name");
  bpf_map* m = RequireMap(info.Env(), name, "map");
  if (!loaded_) ThrowErrno(info.Env(), EAGAIN, "map", "map " + name, "object is not loaded yet");
  int fd = dup(bpf_map__fd(m));
  if (fd < 0) ThrowErrno(info.Env(), errno, "dup", "map " + name);
  return MapHandle::NewFromFd(info.Env(), fd, name);
}

Napi::Value ObjectHandle::Program(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = ArgString(info, 0, "program name");
  bpf_object* obj = Require(env, "program");
  bpf_program* p = bpf_object__find_program_by_name(obj, name.c_str());
  if (!p) ThrowErrno(env, ENOENT, "program", "program " + name, "no program of that name in " + path_);
  if (!loaded_) ThrowErrno(env, EAGAIN, "program", "program " + name, "object is not loaded yet");
  int fd = dup(bpf_program__fd(p));
  if (fd < 0) ThrowErrno(env, errno, "dup", "program " + name);
  return ProgramHandle::NewFromFd(env, fd, name);
}

Napi::Value ObjectHandle::Close(const Napi::CallbackInfo& info) {
  if (loading_) ThrowErrno(info.Env(), EBUSY, "close", "object " + path_, "a load is in progress");
  if (obj_) {
    bpf_object__close(obj_);
    obj_ = nullptr;
  }
  return info.Env().Undefined();
}

Napi::Value ObjectHandle::IsLoaded(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), loaded_ && obj_);
}

}  // namespace patronus
