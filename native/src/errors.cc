// Error plumbing: every failure becomes an instance of the JS BpfError
// class (or its VerifierError / NotSupportedError subclasses) with errno,
// code, operation and object name.
#include "addon.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstring>
#include <fstream>

namespace patronus {

// ENOTSUPP (524) is kernel-internal, so libc has no name for it; the BPF
// syscall returns it for an operation a map type lacks (e.g. batch ops on LPM tries).
static constexpr int kENOTSUPP = 524;

std::string ErrnoName(int err) {
  if (err == kENOTSUPP) return "ENOTSUPP";
  const char* n = strerrorname_np(err);
  if (n) return n;
  char b[24];
  snprintf(b, sizeof(b), "E%d", err);
  return b;
}

Napi::Error MakeError(Napi::Env env, const Failure& f) {
  auto* data = env.GetInstanceData<AddonData>();
  std::string desc = f.object.empty() ? f.operation : f.object + ": " + f.operation;
  std::string msg = desc + " failed";
  if (f.err == kENOTSUPP) msg += ": ENOTSUPP (operation not supported for this object type)";
  else if (f.err) msg += ": " + ErrnoName(f.err) + " (" + strerror(f.err) + ")";
  if (!f.message.empty()) msg += ": " + f.message;

  Napi::Object props = Napi::Object::New(env);
  props.Set("errno", Napi::Number::New(env, f.err));
  props.Set("code", Napi::String::New(env, f.err ? ErrnoName(f.err) : "EINVAL"));
  props.Set("operation", Napi::String::New(env, f.operation));
  props.Set("object", Napi::String::New(env, f.object));
  if (!f.log.empty()) props.Set("log", Napi::String::New(env, f.log));
  if (f.done) props.Set("done", Napi::Number::New(env, *f.done));

  Napi::FunctionReference* ctor = nullptr;
  if (data) {
    if (f.verifier && !data->verifierError.IsEmpty()) ctor = &data->verifierError;
    else if ((f.err == EOPNOTSUPP || f.err == ENOTSUP || f.err == kENOTSUPP) && !data->notSupportedError.IsEmpty())
      ctor = &data->notSupportedError;
    else if (!data->bpfError.IsEmpty()) ctor = &data->bpfError;
  }
  if (ctor) {
    Napi::Value e = ctor->New({Napi::String::New(env, msg), props});
    return Napi::Error(env, e);
  }
  Napi::Error e = Napi::Error::New(env, msg);
  for (const auto& k : {"errno", "code", "operation", "object"}) e.Set(k, props.Get(k));
  if (f.done) e.Set("done", props.Get("done"));
  return e;
}

OwnedFd::~OwnedFd() {
  if (fd_ >= 0) close(fd_);
}

OwnedFd DupForJob(Napi::Env env, int fd, const std::string& op, const std::string& object) {
  int d = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (d < 0) ThrowErrno(env, errno, op, object, "dup of the handle's fd for async work");
  return OwnedFd(d);
}

void Throw(Napi::Env env, const Failure& f) { throw MakeError(env, f); }

void ThrowErrno(Napi::Env env, int err, const std::string& op, const std::string& obj,
                const std::string& msg) {
  Throw(env, Failure{err < 0 ? -err : err, op, obj, msg, "", false});
}

void ThrowInvalid(Napi::Env env, const std::string& op, const std::string& obj,
                  const std::string& msg) {
  Throw(env, Failure{EINVAL, op, obj, msg, "", false});
}

void PromiseWorker::OnOK() {
  Napi::Env env = Env();
  if (failure_) {
    deferred_.Reject(MakeError(env, *failure_).Value());
    return;
  }
  try {
    deferred_.Resolve(Resolve(env));
  } catch (const Napi::Error& e) {
    deferred_.Reject(e.Value());
  }
}

// ---- libbpf print capture -------------------------------------------------

static thread_local LogCapture* current_capture = nullptr;

LogCapture::LogCapture() { current_capture = this; }
LogCapture::~LogCapture() { current_capture = nullptr; }

static int libbpf_print(enum libbpf_print_level level, const char* fmt, va_list args) {
  if (!current_capture || level == LIBBPF_DEBUG) return 0;
  char buf[4096];
  va_list copy;
  va_copy(copy, args);
  int n = vsnprintf(buf, sizeof(buf), fmt, copy);
  va_end(copy);
  if (n < 0) return 0;
  if ((size_t)n < sizeof(buf)) {
    current_capture->text.append(buf, n);
  } else {
    std::string big(n + 1, '\0');
    vsnprintf(big.data(), big.size(), fmt, args);
    big.resize(n);
    current_capture->text += big;
  }
  return n;
}

void InstallLibbpfPrint() { libbpf_set_print(libbpf_print); }

// ---- argument helpers ---------------------------------------------------

std::string ArgString(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsString())
    throw Napi::TypeError::New(info.Env(), std::string(what) + " must be a string");
  return info[i].As<Napi::String>().Utf8Value();
}

uint32_t ArgU32(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsNumber())
    throw Napi::TypeError::New(info.Env(), std::string(what) + " must be a number");
  double v = info[i].As<Napi::Number>().DoubleValue();
  if (v < 0 || v > 4294967295.0 || v != (double)(uint64_t)v)
    throw Napi::RangeError::New(info.Env(), std::string(what) + " must be an unsigned 32-bit integer");
  return (uint32_t)v;
}

Napi::Buffer<uint8_t> ArgBuffer(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsBuffer())
    throw Napi::TypeError::New(info.Env(), std::string(what) + " must be a Buffer");
  return info[i].As<Napi::Buffer<uint8_t>>();
}

std::string FdKind(int fd) {
  std::ifstream in("/proc/self/fdinfo/" + std::to_string(fd));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("map_type:", 0) == 0) return "map";
    if (line.rfind("prog_type:", 0) == 0) return "prog";
    if (line.rfind("link_type:", 0) == 0) return "link";
  }
  return "";
}

}  // namespace patronus
