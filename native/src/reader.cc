// Readers that wait on their own thread and hand batches of records to JS
// through a thread-safe function (STYLE.md: long waits off the JS thread):
//   NativeRingReader(map, onBatch)       a BPF ring buffer (libbpf ring_buffer)
//   NativeNetlinkSocket(protocol, onBatch) a netlink socket (e.g. NFLOG); JS
//                                        builds and parses every message
// onBatch(records: Buffer, dropped: number): records are concatenated as
// [u32 length (host order)][bytes, padded to 4]; dropped counts records this
// reader had to discard since the last batch because JS fell behind (the
// queue towards JS is bounded: a slow consumer loses records, counted,
// never memory).
//
// Lifetime: each reader works on its own dup of the fd, so closing the JS
// map handle (or the fd number being reused) cannot pull the ring from under
// the thread. close() wakes the thread through an eventfd, joins it, then
// frees; the destructor does the same when close() was never called.
#include "addon.h"

#include <linux/netlink.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <functional>
#include <thread>
#include <vector>

namespace patronus {

namespace {

constexpr size_t kMaxQueuedBatches = 64;
constexpr size_t kMaxBatchBytes = 1 << 20;

struct Batch {
  std::vector<uint8_t> bytes;
  uint32_t dropped = 0;
};

void AppendRecord(std::vector<uint8_t>& out, const void* data, size_t len) {
  uint32_t n = (uint32_t)len;
  size_t at = out.size();
  out.resize(at + 4 + ((len + 3) & ~size_t(3)), 0);
  memcpy(out.data() + at, &n, 4);
  memcpy(out.data() + at + 4, data, len);
}

void CallJs(Napi::Env env, Napi::Function cb, void*, Batch* b) {
  if (env != nullptr && cb != nullptr) {
    auto buf = Napi::Buffer<uint8_t>::Copy(env, b->bytes.data(), b->bytes.size());
    cb.Call({buf, Napi::Number::New(env, b->dropped)});
  }
  delete b;
}

using Tsfn = Napi::TypedThreadSafeFunction<void, Batch, CallJs>;

// The thread, wake-up and hand-over shared by both readers.
class Pump {
 public:
  ~Pump() { Stop(); }

  void Start(Napi::Env env, Napi::Function cb, const char* name, std::function<void()> loop) {
    wake_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wake_ < 0) ThrowErrno(env, errno, "eventfd", name);
    tsfn_ = Tsfn::New(env, cb, name, kMaxQueuedBatches, 1);
    started_ = true;
    thread_ = std::thread(std::move(loop));
  }

  // Hands the batch to JS unless the queue is full; then it is counted.
  void Deliver(std::vector<uint8_t>& bytes, uint32_t records) {
    if (records == 0 && dropped_ == 0) return;
    auto* b = new Batch{std::move(bytes), dropped_};
    bytes = {};
    if (tsfn_.NonBlockingCall(b) != napi_ok) {
      dropped_ = b->dropped + records;
      delete b;
      return;
    }
    dropped_ = 0;
  }

  void Stop() {
    if (!started_) return;
    started_ = false;
    stop_ = true;
    uint64_t one = 1;
    if (write(wake_, &one, sizeof(one)) < 0) { /* the thread also sees stop_ on its next timeout */ }
    if (thread_.joinable()) thread_.join();
    tsfn_.Release();
    close(wake_);
    wake_ = -1;
  }

  void Ref(Napi::Env env, bool on) {
    if (!started_) return;
    if (on) tsfn_.Ref(env);
    else tsfn_.Unref(env);
  }

  bool Stopping() const { return stop_; }
  int WakeFd() const { return wake_; }

 private:
  Tsfn tsfn_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  bool started_ = false;
  int wake_ = -1;
  uint32_t dropped_ = 0;
};

}  // namespace

// ---------------- BPF ring buffer ----------------

class RingReader : public Napi::ObjectWrap<RingReader> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "NativeRingReader",
                       {InstanceMethod("close", &RingReader::Close), InstanceMethod("ref", &RingReader::Ref),
                        InstanceMethod("unref", &RingReader::Unref)});
  }

  // new NativeRingReader(map: NativeMap, onBatch)
  explicit RingReader(const Napi::CallbackInfo& info) : Napi::ObjectWrap<RingReader>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[0].IsObject() || !info[1].IsFunction())
      throw Napi::TypeError::New(env, "NativeRingReader(map, onBatch) expects a NativeMap and a function");
    MapHandle* m = Napi::ObjectWrap<MapHandle>::Unwrap(info[0].As<Napi::Object>());
    name_ = "ring buffer " + m->Name();
    fd_ = DupForJob(env, m->Fd(env, "ring_buffer__new"), "ring_buffer__new", name_);
    rb_ = ring_buffer__new(fd_.get(), &RingReader::OnRecord, this, nullptr);
    if (!rb_) ThrowErrno(env, errno, "ring_buffer__new", name_);
    // the wake-up eventfd joins libbpf's epoll set: data.fd 0 makes
    // ring_buffer__poll() look at ring 0 (harmless), then return
    pump_.Start(env, info[1].As<Napi::Function>(), name_.c_str(), [this] { Loop(); });
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = 0;
    if (epoll_ctl(ring_buffer__epoll_fd(rb_), EPOLL_CTL_ADD, pump_.WakeFd(), &ev)) {
      int e = errno;
      Free();
      ThrowErrno(env, e, "epoll_ctl", name_);
    }
  }

  ~RingReader() { Free(); }

 private:
  static int OnRecord(void* ctx, void* data, size_t size) {
    auto* self = static_cast<RingReader*>(ctx);
    if (self->batch_.size() >= kMaxBatchBytes) {
      self->overflow_++;
      return 0;
    }
    AppendRecord(self->batch_, data, size);
    self->records_++;
    return 0;
  }

  void Loop() {
    while (!pump_.Stopping()) {
      int n = ring_buffer__poll(rb_, 1000);
      if (n < 0 && n != -EINTR) break;
      if (overflow_) {  // count records the batch had no room for as dropped
        records_ += overflow_;
        overflow_ = 0;
      }
      pump_.Deliver(batch_, records_);
      records_ = 0;
    }
  }

  void Free() {
    pump_.Stop();
    if (rb_) ring_buffer__free(rb_);
    rb_ = nullptr;
    fd_ = OwnedFd();
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Free();
    return info.Env().Undefined();
  }
  Napi::Value Ref(const Napi::CallbackInfo& info) {
    pump_.Ref(info.Env(), true);
    return info.Env().Undefined();
  }
  Napi::Value Unref(const Napi::CallbackInfo& info) {
    pump_.Ref(info.Env(), false);
    return info.Env().Undefined();
  }

  std::string name_;
  OwnedFd fd_;
  ring_buffer* rb_ = nullptr;
  Pump pump_;
  std::vector<uint8_t> batch_;
  uint32_t records_ = 0;
  uint32_t overflow_ = 0;
};

// ---------------- netlink socket ----------------

class NetlinkSocket : public Napi::ObjectWrap<NetlinkSocket> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "NativeNetlinkSocket",
                       {InstanceMethod("send", &NetlinkSocket::Send), InstanceMethod("close", &NetlinkSocket::Close),
                        InstanceMethod("ref", &NetlinkSocket::Ref), InstanceMethod("unref", &NetlinkSocket::Unref)});
  }

  // new NativeNetlinkSocket(protocol, onBatch, rcvbufBytes?): opened in the
  // calling thread's network namespace (call it inside inNetns).
  explicit NetlinkSocket(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NetlinkSocket>(info) {
    Napi::Env env = info.Env();
    uint32_t proto = ArgU32(info, 0, "netlink protocol");
    if (info.Length() < 2 || !info[1].IsFunction()) throw Napi::TypeError::New(env, "onBatch must be a function");
    name_ = "netlink protocol " + std::to_string(proto);
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, (int)proto);
    if (fd < 0) ThrowErrno(env, errno, "socket", name_);
    fd_ = OwnedFd(fd);
    if (info.Length() > 2 && info[2].IsNumber()) {
      int sz = info[2].As<Napi::Number>().Int32Value();
      // SO_RCVBUFFORCE needs CAP_NET_ADMIN; fall back to the capped option
      if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof(sz)))
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
    }
    sockaddr_nl sa{};
    sa.nl_family = AF_NETLINK;
    if (bind(fd, (sockaddr*)&sa, sizeof(sa))) ThrowErrno(env, errno, "bind", name_);
    pump_.Start(env, info[1].As<Napi::Function>(), name_.c_str(), [this] { Loop(); });
  }

  ~NetlinkSocket() { pump_.Stop(); }

 private:
  void Loop() {
    std::vector<uint8_t> buf(1 << 16);
    std::vector<uint8_t> batch;
    uint32_t records = 0;
    pollfd fds[2] = {{fd_.get(), POLLIN, 0}, {pump_.WakeFd(), POLLIN, 0}};
    while (!pump_.Stopping()) {
      int n = poll(fds, 2, 1000);
      if (n < 0 && errno != EINTR) break;
      if (pump_.Stopping()) break;
      // drain what is queued now, then hand it over as one batch
      for (;;) {
        ssize_t r = recv(fd_.get(), buf.data(), buf.size(), MSG_DONTWAIT);
        if (r < 0) {
          if (errno == ENOBUFS) {  // the kernel dropped messages: report as an empty record
            AppendRecord(batch, "", 0);
            records++;
            continue;
          }
          break;
        }
        if (batch.size() < kMaxBatchBytes) {
          AppendRecord(batch, buf.data(), (size_t)r);
          records++;
        }
        if (batch.size() >= kMaxBatchBytes) break;
      }
      pump_.Deliver(batch, records);
      records = 0;
    }
  }

  Napi::Value Send(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto b = ArgBuffer(info, 0, "message");
    if (fd_.get() < 0) ThrowErrno(env, EBADF, "send", name_, "socket is closed");
    sockaddr_nl sa{};
    sa.nl_family = AF_NETLINK;
    if (sendto(fd_.get(), b.Data(), b.Length(), 0, (sockaddr*)&sa, sizeof(sa)) < 0) ThrowErrno(env, errno, "sendto", name_);
    return env.Undefined();
  }
  Napi::Value Close(const Napi::CallbackInfo& info) {
    pump_.Stop();
    fd_ = OwnedFd();
    return info.Env().Undefined();
  }
  Napi::Value Ref(const Napi::CallbackInfo& info) {
    pump_.Ref(info.Env(), true);
    return info.Env().Undefined();
  }
  Napi::Value Unref(const Napi::CallbackInfo& info) {
    pump_.Ref(info.Env(), false);
    return info.Env().Undefined();
  }

  std::string name_;
  OwnedFd fd_;
  Pump pump_;
};

void InitReaders(Napi::Env env, Napi::Object exports) {
  exports.Set("NativeRingReader", RingReader::Init(env));
  exports.Set("NativeNetlinkSocket", NetlinkSocket::Init(env));
}

}  // namespace patronus
