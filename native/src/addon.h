// Shared declarations of the Patronus libbpf addon. The addon is a thin,
// policy-free boundary: every export is declared in src/bpf/native.d.ts.
#pragma once

#include <napi.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <unistd.h>

#include <mutex>
#include <optional>
#include <string>

namespace patronus {

// Per-environment state: the JS error classes handed over by setErrorClasses()
// and the constructors of the wrapped handle classes.
struct AddonData {
  Napi::FunctionReference bpfError;
  Napi::FunctionReference verifierError;
  Napi::FunctionReference notSupportedError;
  Napi::FunctionReference mapCtor;
  Napi::FunctionReference programCtor;
};

// A failure captured off the JS thread and turned into a JS error later.
struct Failure {
  int err = 0;            // positive errno
  std::string operation;  // e.g. "bpf_map_update_elem"
  std::string object;     // e.g. "map stats"
  std::string message;    // optional extra text
  std::string log;        // verifier log, when there is one
  bool verifier = false;
  std::optional<double> done;  // batch writes: entries really written before the failure
};

// A file descriptor owned by one piece of async work. Workers never use the
// fd number of a handle: the handle may be closed (and the number reused by
// another map) before the worker runs. Each job works on its own dup, which
// keeps the kernel object alive and the number unambiguous until the job is
// destroyed (cilium/ebpf keeps its FD alive per syscall for the same reason).
class OwnedFd {
 public:
  explicit OwnedFd(int fd = -1) : fd_(fd) {}
  OwnedFd(const OwnedFd&) = delete;
  OwnedFd& operator=(const OwnedFd&) = delete;
  OwnedFd(OwnedFd&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  OwnedFd& operator=(OwnedFd&& o) noexcept {
    if (this != &o) {
      if (fd_ >= 0) ::close(fd_);
      fd_ = o.fd_;
      o.fd_ = -1;
    }
    return *this;
  }
  ~OwnedFd();
  int get() const { return fd_; }

 private:
  int fd_;
};

// dup(fd) with O_CLOEXEC, or throws naming the operation and object.
OwnedFd DupForJob(Napi::Env env, int fd, const std::string& op, const std::string& object);

Napi::Error MakeError(Napi::Env env, const Failure& f);
[[noreturn]] void Throw(Napi::Env env, const Failure& f);
[[noreturn]] void ThrowErrno(Napi::Env env, int err, const std::string& op, const std::string& obj,
                             const std::string& msg = "");
[[noreturn]] void ThrowInvalid(Napi::Env env, const std::string& op, const std::string& obj,
                               const std::string& msg);
std::string ErrnoName(int err);

// libbpf print capture: while a LogCapture lives, libbpf output on this thread
// is appended to it (used to carry the verifier log of a failed load).
class LogCapture {
 public:
  LogCapture();
  ~LogCapture();
  std::string text;
};
void InstallLibbpfPrint();

// Base for promise-returning workers: Execute() fills failure or a result;
// Resolve() builds the JS value on the main thread.
class PromiseWorker : public Napi::AsyncWorker {
 public:
  explicit PromiseWorker(Napi::Env env)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

 protected:
  void OnOK() override;
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }
  virtual Napi::Value Resolve(Napi::Env env) { return env.Undefined(); }
  std::optional<Failure> failure_;
  Napi::Promise::Deferred deferred_;
};

// Handles. Each owns one file descriptor (dup'ed from the object it came
// from, so a map outlives the object that created it) and closes it once.
class MapHandle : public Napi::ObjectWrap<MapHandle> {
 public:
  static Napi::Function Init(Napi::Env env);
  static Napi::Object NewFromFd(Napi::Env env, int fd, const std::string& name);
  explicit MapHandle(const Napi::CallbackInfo& info);
  ~MapHandle();
  int Fd(Napi::Env env, const char* op) const;
  const std::string& Name() const { return name_; }

 private:
  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value BtfTypes(const Napi::CallbackInfo& info);
  Napi::Value GetFd(const Napi::CallbackInfo& info);
  Napi::Value Lookup(const Napi::CallbackInfo& info);
  Napi::Value LookupAndDelete(const Napi::CallbackInfo& info);
  Napi::Value Update(const Napi::CallbackInfo& info);
  Napi::Value Delete(const Napi::CallbackInfo& info);
  Napi::Value NextKey(const Napi::CallbackInfo& info);
  Napi::Value LookupBatch(const Napi::CallbackInfo& info);
  Napi::Value UpdateBatch(const Napi::CallbackInfo& info);
  Napi::Value DeleteBatch(const Napi::CallbackInfo& info);
  Napi::Value Pin(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value IsClosed(const Napi::CallbackInfo& info);
  void CheckKey(Napi::Env env, const Napi::Buffer<uint8_t>& key, const char* op) const;
  size_t ValueBytes() const;

  int fd_ = -1;
  std::string name_;
  bpf_map_info info_{};
  bool percpu_ = false;
  int ncpus_ = 1;
};

class ProgramHandle : public Napi::ObjectWrap<ProgramHandle> {
 public:
  static Napi::Function Init(Napi::Env env);
  static Napi::Object NewFromFd(Napi::Env env, int fd, const std::string& name);
  explicit ProgramHandle(const Napi::CallbackInfo& info);
  ~ProgramHandle();
  int Fd(Napi::Env env, const char* op) const;

 private:
  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value GetFd(const Napi::CallbackInfo& info);
  Napi::Value AttachXdp(const Napi::CallbackInfo& info);
  Napi::Value AttachTc(const Napi::CallbackInfo& info);
  Napi::Value Pin(const Napi::CallbackInfo& info);
  Napi::Value TestRun(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value IsClosed(const Napi::CallbackInfo& info);

  int fd_ = -1;
  std::string name_;
  bpf_prog_info info_{};
};

class ObjectHandle : public Napi::ObjectWrap<ObjectHandle> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit ObjectHandle(const Napi::CallbackInfo& info);
  ~ObjectHandle();
  bpf_object* Obj() const { return obj_; }

 private:
  bpf_object* Require(Napi::Env env, const char* op) const;
  bpf_map* RequireMap(Napi::Env env, const std::string& name, const char* op) const;
  Napi::Value SetMapMaxEntries(const Napi::CallbackInfo& info);
  Napi::Value SetMapPinPath(const Napi::CallbackInfo& info);
  Napi::Value SetMapInitialValue(const Napi::CallbackInfo& info);
  Napi::Value ReuseMapFd(const Napi::CallbackInfo& info);
  Napi::Value Load(const Napi::CallbackInfo& info);
  Napi::Value Programs(const Napi::CallbackInfo& info);
  Napi::Value Maps(const Napi::CallbackInfo& info);
  Napi::Value Map(const Napi::CallbackInfo& info);
  Napi::Value Program(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value IsLoaded(const Napi::CallbackInfo& info);

  bpf_object* obj_ = nullptr;
  std::string path_;
  bool loaded_ = false;
  bool loading_ = false;
  friend class LoadWorker;
};

// Module-level functions (program.cc / addon.cc).
Napi::Value DetachXdp(const Napi::CallbackInfo& info);
Napi::Value QueryXdp(const Napi::CallbackInfo& info);
Napi::Value DetachTc(const Napi::CallbackInfo& info);
Napi::Value QueryTc(const Napi::CallbackInfo& info);
Napi::Value DestroyTcHook(const Napi::CallbackInfo& info);

std::string ArgString(const Napi::CallbackInfo& info, size_t i, const char* what);
uint32_t ArgU32(const Napi::CallbackInfo& info, size_t i, const char* what);
Napi::Buffer<uint8_t> ArgBuffer(const Napi::CallbackInfo& info, size_t i, const char* what);
std::string FdKind(int fd);

// reader.cc: NativeRingReader, NativeNetlinkSocket
void InitReaders(Napi::Env env, Napi::Object exports);  // "map", "prog", "link" or "" from /proc/self/fdinfo

}  // namespace patronus
