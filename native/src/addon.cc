// Module entry: registers the handle classes and module functions.
#include "addon.h"

#include <fcntl.h>
#include <sched.h>
#include <malloc.h>
#include <net/if.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>

#include <cerrno>

namespace patronus {

// setErrorClasses(BpfError, VerifierError, NotSupportedError): called once
// by src/bpf/addon.ts when it loads the binding, so native code constructs the JS error types.
static Napi::Value SetErrorClasses(const Napi::CallbackInfo& info) {
  auto* data = info.Env().GetInstanceData<AddonData>();
  auto ref = [&](size_t i, Napi::FunctionReference& r) {
    if (info.Length() > i && info[i].IsFunction()) r = Napi::Persistent(info[i].As<Napi::Function>());
  };
  ref(0, data->bpfError);
  ref(1, data->verifierError);
  ref(2, data->notSupportedError);
  return info.Env().Undefined();
}

// openPinned(path) -> NativeMap | NativeProgram
static Napi::Value OpenPinned(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = ArgString(info, 0, "pin path");
  int fd = bpf_obj_get(path.c_str());
  if (fd < 0) ThrowErrno(env, errno, "bpf_obj_get", path);
  std::string kind = FdKind(fd);
  if (kind == "map") return MapHandle::NewFromFd(env, fd, "");
  if (kind == "prog") return ProgramHandle::NewFromFd(env, fd, "");
  close(fd);
  ThrowInvalid(env, "bpf_obj_get", path, "pinned object is a " + (kind.empty() ? "unknown object" : kind) +
                                           ", not a map or program");
}

// unpin(path): removes a bpffs pin (the object lives on while referenced).
static Napi::Value Unpin(const Napi::CallbackInfo& info) {
  std::string path = ArgString(info, 0, "pin path");
  if (unlink(path.c_str())) ThrowErrno(info.Env(), errno, "unlink", path);
  return info.Env().Undefined();
}

static Napi::Value ProbeMapType(const Napi::CallbackInfo& info) {
  uint32_t t = ArgU32(info, 0, "map type");
  int r = libbpf_probe_bpf_map_type((bpf_map_type)t, nullptr);
  if (r < 0) ThrowErrno(info.Env(), r, "libbpf_probe_bpf_map_type", "map type " + std::to_string(t));
  return Napi::Boolean::New(info.Env(), r == 1);
}

static Napi::Value ProbeProgType(const Napi::CallbackInfo& info) {
  uint32_t t = ArgU32(info, 0, "program type");
  int r = libbpf_probe_bpf_prog_type((bpf_prog_type)t, nullptr);
  if (r < 0) ThrowErrno(info.Env(), r, "libbpf_probe_bpf_prog_type", "program type " + std::to_string(t));
  return Napi::Boolean::New(info.Env(), r == 1);
}

// probeBatchApi() -> boolean: whether the kernel has the BPF_MAP_*_BATCH
// commands, asked once by creating a small hash map and batch-writing two
// entries (cilium/ebpf's haveBatchAPI). Kernels without the commands answer
// EINVAL; any other failure is an error, not a "no".
static Napi::Value ProbeBatchApi(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = bpf_map_create(BPF_MAP_TYPE_HASH, "patronus_probe", 4, 4, 2, nullptr);
  if (fd < 0) ThrowErrno(env, errno, "bpf_map_create", "batch API probe map");
  OwnedFd owned(fd);
  uint32_t keys[2] = {0, 1}, values[2] = {0, 0};
  __u32 count = 2;
  if (bpf_map_update_batch(owned.get(), keys, values, &count, nullptr) == 0) return Napi::Boolean::New(env, true);
  int e = errno;
  if (e == EINVAL || e == 524 /* ENOTSUPP */ || e == EOPNOTSUPP) return Napi::Boolean::New(env, false);
  ThrowErrno(env, e, "bpf_map_update_batch", "batch API probe map");
}

static Napi::Value PossibleCpus(const Napi::CallbackInfo& info) {
  int n = libbpf_num_possible_cpus();
  if (n < 0) ThrowErrno(info.Env(), n, "libbpf_num_possible_cpus", "");
  return Napi::Number::New(info.Env(), n);
}

// ifNameToIndex(name) -> ifindex, or 0 when no such interface: in the calling
// thread's network namespace (call it inside inNetns). No process spawn.
static Napi::Value IfNameToIndex(const Napi::CallbackInfo& info) {
  std::string name = ArgString(info, 0, "interface name");
  if (name.empty() || name.size() >= IF_NAMESIZE) return Napi::Number::New(info.Env(), 0);
  unsigned idx = if_nametoindex(name.c_str());
  if (idx == 0 && errno != ENODEV && errno != ENXIO) ThrowErrno(info.Env(), errno, "if_nametoindex", name);
  return Napi::Number::New(info.Env(), idx);
}

// mallocTrim() -> whether memory went back to the kernel. glibc keeps the pages
// that the C heap freed (parse and compile worker threads' arenas, V8's
// off-heap buffers, libbpf, SQLite) in its arenas and returns only the top of
// the main arena by itself; malloc_trim(0) gives every arena's free pages
// back (madvise), nothing in use is touched. Not glibc: nothing to do.
static Napi::Value MallocTrim(const Napi::CallbackInfo& info) {
#ifdef __GLIBC__
  return Napi::Boolean::New(info.Env(), malloc_trim(0) == 1);
#else
  return Napi::Boolean::New(info.Env(), false);
#endif
}

// notifyServiceManager(socketPath, message): one datagram to the service
// manager's notification socket (systemd's NOTIFY_SOCKET, as sd_notify(3)
// sends it: "READY=1", "RELOADING=1", "STOPPING=1", "STATUS=..."). A path
// starting with '@' is in the abstract namespace. Node's dgram has no unix
// datagram sockets, hence here; which messages to send is the caller's
// business (src/system/service-manager.ts). The message carries the
// sender's credentials, so it comes from this process (NotifyAccess=main).
static Napi::Value NotifyServiceManager(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = ArgString(info, 0, "notify socket path");
  std::string message = ArgString(info, 1, "notify message");
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || (path[0] != '/' && path[0] != '@'))
    ThrowInvalid(env, "sd_notify", path, "not an absolute path or an abstract socket name (@...)");
  if (path.size() >= sizeof(addr.sun_path)) ThrowInvalid(env, "sd_notify", path, "socket path too long");
  memcpy(addr.sun_path, path.data(), path.size());
  if (path[0] == '@') addr.sun_path[0] = '\0';
  socklen_t len = offsetof(sockaddr_un, sun_path) + path.size() + (path[0] == '@' ? 0 : 1);
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) ThrowErrno(env, errno, "socket", "notify socket " + path);
  ssize_t sent = sendto(fd, message.data(), message.size(), MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&addr), len);
  int e = errno;
  close(fd);
  if (sent < 0) ThrowErrno(env, e, "sendto", "notify socket " + path);
  return env.Undefined();
}

// inNetns(path, fn): runs fn synchronously with this thread switched into the
// network namespace at path (e.g. /var/run/netns/lab), then switches back.
// Interface indexes and netlink (XDP/tc attach) then refer to that namespace.
// Only the calling thread moves, so async work stays where it was.
static Napi::Value InNetns(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = ArgString(info, 0, "netns path");
  if (info.Length() < 2 || !info[1].IsFunction()) throw Napi::TypeError::New(env, "callback required");
  int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (self < 0) ThrowErrno(env, errno, "open", "/proc/thread-self/ns/net");
  int target = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (target < 0) {
    int e = errno;
    close(self);
    ThrowErrno(env, e, "open", "netns " + path);
  }
  if (setns(target, CLONE_NEWNET)) {
    int e = errno;
    close(self);
    close(target);
    ThrowErrno(env, e, "setns", "netns " + path);
  }
  close(target);
  Napi::Value result;
  std::optional<Napi::Error> error;
  try {
    result = info[1].As<Napi::Function>().Call({});
  } catch (const Napi::Error& e) {
    error = e;
  }
  if (setns(self, CLONE_NEWNET)) {
    // Cannot return to the original namespace: continuing would act on the
    // wrong interfaces, so stop the process loudly.
    fprintf(stderr, "patronus: setns back to the original network namespace failed: %s\n", strerror(errno));
    abort();
  }
  close(self);
  if (error) throw *error;
  return result;
}

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto* data = new AddonData();
  env.SetInstanceData<AddonData>(data);
  InstallLibbpfPrint();

  Napi::Function obj = ObjectHandle::Init(env);
  Napi::Function map = MapHandle::Init(env);
  Napi::Function prog = ProgramHandle::Init(env);
  data->mapCtor = Napi::Persistent(map);
  data->programCtor = Napi::Persistent(prog);

  exports.Set("NativeObject", obj);
  exports.Set("NativeMap", map);
  exports.Set("NativeProgram", prog);
  exports.Set("setErrorClasses", Napi::Function::New(env, SetErrorClasses));
  exports.Set("openPinned", Napi::Function::New(env, OpenPinned));
  exports.Set("unpin", Napi::Function::New(env, Unpin));
  exports.Set("detachXdp", Napi::Function::New(env, DetachXdp));
  exports.Set("queryXdp", Napi::Function::New(env, QueryXdp));
  exports.Set("detachTc", Napi::Function::New(env, DetachTc));
  exports.Set("queryTc", Napi::Function::New(env, QueryTc));
  exports.Set("destroyTcHook", Napi::Function::New(env, DestroyTcHook));
  exports.Set("probeMapType", Napi::Function::New(env, ProbeMapType));
  exports.Set("probeProgType", Napi::Function::New(env, ProbeProgType));
  exports.Set("inNetns", Napi::Function::New(env, InNetns));
  exports.Set("possibleCpus", Napi::Function::New(env, PossibleCpus));
  exports.Set("ifNameToIndex", Napi::Function::New(env, IfNameToIndex));
  exports.Set("probeBatchApi", Napi::Function::New(env, ProbeBatchApi));
  exports.Set("mallocTrim", Napi::Function::New(env, MallocTrim));
  exports.Set("notifyServiceManager", Napi::Function::New(env, NotifyServiceManager));
  InitReaders(env, exports);
  return exports;
}

}  // namespace patronus

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return patronus::Init(env, exports); }

NODE_API_MODULE(patronus_bpf, InitAddon)
