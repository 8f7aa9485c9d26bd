// Program handle: XDP and tc attachment, pinning, and bpf_prog_test_run.
// Detach and query are module functions because they act on an interface,
// not on a program the caller necessarily holds.
#include "addon.h"

#include <linux/if_link.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

namespace patronus {

Napi::Function ProgramHandle::Init(Napi::Env env) {
  return DefineClass(env, "NativeProgram",
                     {
                         InstanceAccessor("info", &ProgramHandle::Info, nullptr),
                         InstanceAccessor("fd", &ProgramHandle::GetFd, nullptr),
                         InstanceAccessor("closed", &ProgramHandle::IsClosed, nullptr),
                         InstanceMethod("attachXdp", &ProgramHandle::AttachXdp),
                         InstanceMethod("attachTc", &ProgramHandle::AttachTc),
                         InstanceMethod("pin", &ProgramHandle::Pin),
                         InstanceMethod("testRun", &ProgramHandle::TestRun),
                         InstanceMethod("close", &ProgramHandle::Close),
                     });
}

Napi::Object ProgramHandle::NewFromFd(Napi::Env env, int fd, const std::string& name) {
  auto* data = env.GetInstanceData<AddonData>();
  return data->programCtor.New({Napi::Number::New(env, fd), Napi::String::New(env, name)});
}

ProgramHandle::ProgramHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ProgramHandle>(info) {
  Napi::Env env = info.Env();
  int fd = (int)ArgU32(info, 0, "fd");
  name_ = info.Length() > 1 && info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "";
  if (FdKind(fd) != "prog") {
    close(fd);
    ThrowInvalid(env, "open program", "program " + name_, "file descriptor does not refer to a BPF program");
  }
  uint32_t len = sizeof(info_);
  if (bpf_obj_get_info_by_fd(fd, &info_, &len)) {
    int e = errno;
    close(fd);
    ThrowErrno(env, e, "bpf_obj_get_info_by_fd", "program " + name_);
  }
  if (name_.empty()) name_ = info_.name;
  fd_ = fd;
}

ProgramHandle::~ProgramHandle() {
  if (fd_ >= 0) close(fd_);
}

int ProgramHandle::Fd(Napi::Env env, const char* op) const {
  if (fd_ < 0) ThrowErrno(env, EBADF, op, "program " + name_, "handle is closed");
  return fd_;
}

Napi::Value ProgramHandle::Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  const char* t = libbpf_bpf_prog_type_str((bpf_prog_type)info_.type);
  char tag[17];
  for (int i = 0; i < 8; i++) snprintf(tag + 2 * i, 3, "%02x", info_.tag[i]);
  o.Set("name", name_);
  o.Set("id", info_.id);
  o.Set("type", t ? t : "unknown");
  o.Set("tag", std::string(tag, 16));
  return o;
}

Napi::Value ProgramHandle::GetFd(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), Fd(info.Env(), "fd"));
}

Napi::Value ProgramHandle::IsClosed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), fd_ < 0);
}

static uint32_t XdpModeFlag(Napi::Env env, const std::string& mode) {
  if (mode == "native") return XDP_FLAGS_DRV_MODE;
  if (mode == "generic") return XDP_FLAGS_SKB_MODE;
  if (mode == "offload") return XDP_FLAGS_HW_MODE;
  throw Napi::TypeError::New(env, "XDP mode must be native, generic or offload, got " + mode);
}

static const char* XdpModeName(uint8_t attach_mode) {
  switch (attach_mode) {
    case XDP_ATTACHED_DRV: return "native";
    case XDP_ATTACHED_SKB: return "generic";
    case XDP_ATTACHED_HW: return "offload";
    case XDP_ATTACHED_MULTI: return "multi";
    default: return "none";
  }
}

// attachXdp(ifindex, { mode, replace?: boolean, expected?: NativeProgram })
//   replace=false: fails with EBUSY when a program is already attached.
//   expected: atomically replace only that program (XDP_FLAGS_REPLACE).
Napi::Value ProgramHandle::AttachXdp(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = Fd(env, "bpf_xdp_attach");
  uint32_t ifindex = ArgU32(info, 0, "ifindex");
  Napi::Object o = info.Length() > 1 && info[1].IsObject() ? info[1].As<Napi::Object>() : Napi::Object::New(env);
  std::string mode = o.Has("mode") ? o.Get("mode").ToString().Utf8Value() : "native";
  uint32_t flags = XdpModeFlag(env, mode);
  bool replace = o.Has("replace") && o.Get("replace").ToBoolean();
  int old_fd = 0;
  if (o.Has("expected") && o.Get("expected").IsObject()) {
    ProgramHandle* exp = Napi::ObjectWrap<ProgramHandle>::Unwrap(o.Get("expected").As<Napi::Object>());
    old_fd = exp->Fd(env, "bpf_xdp_attach");
    flags |= XDP_FLAGS_REPLACE;
  } else if (!replace) {
    flags |= XDP_FLAGS_UPDATE_IF_NOEXIST;
  }
  LIBBPF_OPTS(bpf_xdp_attach_opts, opts, .old_prog_fd = old_fd);
  int err = bpf_xdp_attach((int)ifindex, fd, flags, &opts);
  if (err)
    ThrowErrno(env, err, "bpf_xdp_attach", "program " + name_,
               "ifindex " + std::to_string(ifindex) + " mode " + mode);
  return Napi::String::New(env, mode);
}

// detachXdp(ifindex, mode, expected?: NativeProgram)
Napi::Value DetachXdp(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t ifindex = ArgU32(info, 0, "ifindex");
  std::string mode = ArgString(info, 1, "mode");
  uint32_t flags = XdpModeFlag(env, mode);
  int old_fd = 0;
  if (info.Length() > 2 && info[2].IsObject()) {
    ProgramHandle* exp = Napi::ObjectWrap<ProgramHandle>::Unwrap(info[2].As<Napi::Object>());
    old_fd = exp->Fd(env, "bpf_xdp_detach");
    flags |= XDP_FLAGS_REPLACE;
  }
  LIBBPF_OPTS(bpf_xdp_attach_opts, opts, .old_prog_fd = old_fd);
  int err = bpf_xdp_detach((int)ifindex, flags, &opts);
  if (err) ThrowErrno(env, err, "bpf_xdp_detach", "ifindex " + std::to_string(ifindex), "mode " + mode);
  return env.Undefined();
}

// queryXdp(ifindex) -> { mode, progId, nativeProgId, genericProgId, offloadProgId }
Napi::Value QueryXdp(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t ifindex = ArgU32(info, 0, "ifindex");
  LIBBPF_OPTS(bpf_xdp_query_opts, opts);
  int err = bpf_xdp_query((int)ifindex, 0, &opts);
  if (err) ThrowErrno(env, err, "bpf_xdp_query", "ifindex " + std::to_string(ifindex));
  Napi::Object o = Napi::Object::New(env);
  o.Set("mode", XdpModeName(opts.attach_mode));
  o.Set("progId", opts.prog_id);
  o.Set("nativeProgId", opts.drv_prog_id);
  o.Set("genericProgId", opts.skb_prog_id);
  o.Set("offloadProgId", opts.hw_prog_id);
  return o;
}

static bpf_tc_attach_point TcPoint(Napi::Env env, const std::string& dir) {
  if (dir == "ingress") return BPF_TC_INGRESS;
  if (dir == "egress") return BPF_TC_EGRESS;
  throw Napi::TypeError::New(env, "tc direction must be ingress or egress, got " + dir);
}

// attachTc(ifindex, direction, { priority?, handle?, replace? }) -> { priority, handle, progId }
// Creates the clsact qdisc when missing; the filter is direct-action cls_bpf.
Napi::Value ProgramHandle::AttachTc(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = Fd(env, "bpf_tc_attach");
  uint32_t ifindex = ArgU32(info, 0, "ifindex");
  std::string dir = ArgString(info, 1, "direction");
  Napi::Object o = info.Length() > 2 && info[2].IsObject() ? info[2].As<Napi::Object>() : Napi::Object::New(env);
  uint32_t priority = o.Has("priority") ? o.Get("priority").As<Napi::Number>().Uint32Value() : 1;
  uint32_t handle = o.Has("handle") ? o.Get("handle").As<Napi::Number>().Uint32Value() : 1;
  bool replace = o.Has("replace") && o.Get("replace").ToBoolean();
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = (int)ifindex, .attach_point = TcPoint(env, dir));
  int err = bpf_tc_hook_create(&hook);
  if (err && err != -EEXIST)
    ThrowErrno(env, err, "bpf_tc_hook_create", "ifindex " + std::to_string(ifindex), dir);
  LIBBPF_OPTS(bpf_tc_opts, opts, .prog_fd = fd, .flags = replace ? (uint32_t)BPF_TC_F_REPLACE : 0u,
              .prog_id = 0, .handle = handle, .priority = priority);
  err = bpf_tc_attach(&hook, &opts);
  if (err)
    ThrowErrno(env, err, "bpf_tc_attach", "program " + name_,
               "ifindex " + std::to_string(ifindex) + " " + dir);
  Napi::Object r = Napi::Object::New(env);
  r.Set("priority", opts.priority);
  r.Set("handle", opts.handle);
  r.Set("progId", opts.prog_id);
  return r;
}

// detachTc(ifindex, direction, priority, handle)
Napi::Value DetachTc(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t ifindex = ArgU32(info, 0, "ifindex");
  std::string dir = ArgString(info, 1, "direction");
  uint32_t priority = ArgU32(info, 2, "priority");
  uint32_t handle = ArgU32(info, 3, "handle");
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = (int)ifindex, .attach_point = TcPoint(env, dir));
  LIBBPF_OPTS(bpf_tc_opts, opts, .prog_fd = 0, .flags = 0, .prog_id = 0, .handle = handle, .priority = priority);
  int err = bpf_tc_detach(&hook, &opts);
  if (err) ThrowErrno(env, err, "bpf_tc_detach", "ifindex " + std::to_string(ifindex), dir);
  return env.Undefined();
}

// queryTc(ifindex, direction, priority, handle) -> progId | null
Napi::Value QueryTc(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t ifindex = ArgU32(info, 0, "ifindex");
  std::string dir = ArgString(info, 1, "direction");
  uint32_t priority = ArgU32(info, 2, "priority");
  uint32_t handle = ArgU32(info, 3, "handle");
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = (int)ifindex, .attach_point = TcPoint(env, dir));
  LIBBPF_OPTS(bpf_tc_opts, opts, .prog_fd = 0, .flags = 0, .prog_id = 0, .handle = handle, .priority = priority);
  int err = bpf_tc_query(&hook, &opts);
  if (err == -ENOENT || err == -EINVAL) return env.Null();
  if (err) ThrowErrno(env, err, "bpf_tc_query", "ifindex " + std::to_string(ifindex), dir);
  return Napi::Number::New(env, opts.prog_id);
}

// destroyTcHook(ifindex): removes the clsact qdisc and every filter on it.
Napi::Value DestroyTcHook(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t ifindex = ArgU32(info, 0, "ifindex");
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = (int)ifindex,
              .attach_point = (bpf_tc_attach_point)(BPF_TC_INGRESS | BPF_TC_EGRESS));
  int err = bpf_tc_hook_destroy(&hook);
  if (err && err != -ENOENT && err != -EINVAL)
    ThrowErrno(env, err, "bpf_tc_hook_destroy", "ifindex " + std::to_string(ifindex));
  return env.Undefined();
}

Napi::Value ProgramHandle::Pin(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = Fd(env, "bpf_obj_pin");
  std::string path = ArgString(info, 0, "pin path");
  if (bpf_obj_pin(fd, path.c_str())) ThrowErrno(env, errno, "bpf_obj_pin", "program " + name_, path);
  return env.Undefined();
}

class TestRunWorker : public PromiseWorker {
 public:
  TestRunWorker(Napi::Env env, OwnedFd fd, std::string name)
      : PromiseWorker(env), fd_(std::move(fd)), name_(std::move(name)) {}
  std::vector<uint8_t> data_in, ctx_in;
  uint32_t data_out_size = 0, ctx_out_size = 0, repeat = 1, flags = 0, batch = 0;
  void Execute() override {
    data_out_.resize(data_out_size);
    ctx_out_.resize(ctx_out_size);
    LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = data_in.empty() ? nullptr : data_in.data(),
                .data_out = data_out_size ? data_out_.data() : nullptr,
                .data_size_in = (uint32_t)data_in.size(), .data_size_out = data_out_size,
                .ctx_in = ctx_in.empty() ? nullptr : ctx_in.data(),
                .ctx_out = ctx_out_size ? ctx_out_.data() : nullptr, .ctx_size_in = (uint32_t)ctx_in.size(),
                .ctx_size_out = ctx_out_size, .retval = 0, .repeat = (int)repeat, .duration = 0,
                .flags = flags, .cpu = 0, .batch_size = batch);
    int err = bpf_prog_test_run_opts(fd_.get(), &opts);
    if (err) {
      failure_ = Failure{errno, "bpf_prog_test_run_opts", "program " + name_,
                         "data " + std::to_string(data_in.size()) + " bytes", "", false};
      return;
    }
    retval_ = opts.retval;
    duration_ = opts.duration;
    data_out_.resize(std::min<uint32_t>(opts.data_size_out, data_out_size));
    ctx_out_.resize(std::min<uint32_t>(opts.ctx_size_out, ctx_out_size));
  }
  Napi::Value Resolve(Napi::Env env) override {
    Napi::Object o = Napi::Object::New(env);
    o.Set("retval", retval_);
    o.Set("duration", duration_);
    o.Set("data", Napi::Buffer<uint8_t>::Copy(env, data_out_.data(), data_out_.size()));
    if (ctx_out_size) o.Set("ctx", Napi::Buffer<uint8_t>::Copy(env, ctx_out_.data(), ctx_out_.size()));
    return o;
  }

 private:
  OwnedFd fd_;  // this job's own dup: see OwnedFd
  std::string name_;
  std::vector<uint8_t> data_out_, ctx_out_;
  uint32_t retval_ = 0, duration_ = 0;
};

// testRun({ data?, ctx?, dataSizeOut?, ctxSizeOut?, repeat?, flags?, batchSize? })
//   -> Promise<{ retval, duration, data, ctx? }>
Napi::Value ProgramHandle::TestRun(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = Fd(env, "bpf_prog_test_run_opts");
  Napi::Object o = info.Length() > 0 && info[0].IsObject() ? info[0].As<Napi::Object>() : Napi::Object::New(env);
  auto* w = new TestRunWorker(env, DupForJob(env, fd, "bpf_prog_test_run_opts", "program " + name_), name_);
  auto bytes = [&](const char* k) -> std::vector<uint8_t> {
    if (!o.Has(k) || !o.Get(k).IsBuffer()) return {};
    auto b = o.Get(k).As<Napi::Buffer<uint8_t>>();
    return std::vector<uint8_t>(b.Data(), b.Data() + b.Length());
  };
  auto num = [&](const char* k, uint32_t def) -> uint32_t {
    return o.Has(k) && o.Get(k).IsNumber() ? o.Get(k).As<Napi::Number>().Uint32Value() : def;
  };
  w->data_in = bytes("data");
  w->ctx_in = bytes("ctx");
  w->data_out_size = num("dataSizeOut", (uint32_t)w->data_in.size() + 256);
  w->ctx_out_size = num("ctxSizeOut", w->ctx_in.empty() ? 0 : (uint32_t)w->ctx_in.size());
  w->repeat = num("repeat", 1);
  w->flags = num("flags", 0);
  w->batch = num("batchSize", 0);
  w->Queue();
  return w->Promise();
}

Napi::Value ProgramHandle::Close(const Napi::CallbackInfo& info) {
  if (fd_ >= 0) {
    close(fd_);
    fd_ = -1;
  }
  return info.Env().Undefined();
}

}  // namespace patronus
