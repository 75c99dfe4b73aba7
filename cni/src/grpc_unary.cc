#include "plexus/cni/grpc_unary.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>
#include <nghttp2/nghttp2.h>

#include "plexus/datapath/fd.h"

namespace plexus::cni {

namespace {

int hexDigit(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  if (c >= 'A' && c <= 'F') {
    return c - 'A' + 10;
  }
  return -1;
}

// grpc-status: a decimal code; anything else, or a code this client does not know, is UNKNOWN (as grpc does).
GrpcCode parseGrpcStatus(std::string_view text) {
  if (text.empty() || text.size() > 2) {
    return GrpcCode::kUnknown;
  }
  int value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') {
      return GrpcCode::kUnknown;
    }
    value = value * 10 + (c - '0');
  }
  return value <= static_cast<int>(GrpcCode::kUnauthenticated) ? static_cast<GrpcCode>(value) : GrpcCode::kUnknown;
}

nghttp2_nv header(std::string_view name, std::string_view value) {
  // nghttp2_submit_request copies names and values (no NO_COPY flag), so views of temporaries are safe here.
  return nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
                    reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(), value.size(),
                    NGHTTP2_NV_FLAG_NONE};
}

}  // namespace

std::string percentDecode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '%' && i + 2 < text.size() && hexDigit(text[i + 1]) >= 0 && hexDigit(text[i + 2]) >= 0) {
      out.push_back(static_cast<char>(hexDigit(text[i + 1]) * 16 + hexDigit(text[i + 2])));
      i += 2;
    } else {
      out.push_back(text[i]);
    }
  }
  return out;
}

GrpcCode codeFromHttpStatus(int http_status) {
  switch (http_status) {
    case 400: return GrpcCode::kInternal;
    case 401: return GrpcCode::kUnauthenticated;
    case 403: return GrpcCode::kPermissionDenied;
    case 404: return GrpcCode::kUnimplemented;
    case 429:
    case 502:
    case 503:
    case 504: return GrpcCode::kUnavailable;
    default: return GrpcCode::kUnknown;
  }
}

GrpcCode codeFromHttp2Error(uint32_t error_code) {
  switch (error_code) {
    case NGHTTP2_REFUSED_STREAM: return GrpcCode::kUnavailable;  // not processed: safe to retry
    case NGHTTP2_CANCEL: return GrpcCode::kCancelled;
    case NGHTTP2_ENHANCE_YOUR_CALM: return GrpcCode::kResourceExhausted;
    case NGHTTP2_INADEQUATE_SECURITY: return GrpcCode::kPermissionDenied;
    default: return GrpcCode::kInternal;
  }
}

std::string grpcTimeoutValue(std::chrono::milliseconds timeout) {
  // "TimeoutValue → {positive integer as ASCII string of at most 8 digits}" (PROTOCOL-HTTP2.md).
  constexpr int64_t kMax = 99'999'999;
  int64_t ms = std::max<int64_t>(timeout.count(), 1);
  if (ms <= kMax) {
    return fmt::format("{}m", ms);
  }
  return fmt::format("{}S", std::min<int64_t>(ms / 1000, kMax));
}

struct UnaryExchange::State {
  nghttp2_session* session = nullptr;
  int32_t stream_id = -1;
  std::string request;  // framed
  size_t request_sent = 0;
  std::string output;

  int http_status = 0;
  bool have_grpc_status = false;
  std::string grpc_status;
  std::string grpc_message;
  std::string data;
  bool too_large = false;
  bool goaway = false;  // the peer sent GOAWAY

  bool done = false;
  GrpcStatus status;
  std::string response;

  void finish(GrpcStatus s) {
    if (done) {
      return;
    }
    done = true;
    status = std::move(s);
  }

  // The stream closed: decide the status from what arrived (trailers, or headers alone in a Trailers-Only
  // response, which carry grpc-status the same way), then take the one response message.
  void streamClosed(uint32_t error_code) {
    if (too_large) {
      finish({GrpcCode::kResourceExhausted,
              fmt::format("the agent's response is larger than {} bytes", kMaxResponseBytes)});
      return;
    }
    if (!have_grpc_status) {
      if (http_status != 0 && http_status != 200) {
        finish({codeFromHttpStatus(http_status), fmt::format("the agent answered HTTP status {}", http_status)});
      } else if (error_code != NGHTTP2_NO_ERROR) {
        finish({codeFromHttp2Error(error_code),
                fmt::format("the agent reset the call: {}", nghttp2_http2_strerror(error_code))});
      } else {
        finish({GrpcCode::kUnknown, "the agent closed the call without a grpc-status"});
      }
      return;
    }
    GrpcCode code = parseGrpcStatus(grpc_status);
    if (code != GrpcCode::kOk) {
      finish({code, percentDecode(grpc_message)});
      return;
    }
    // One length-prefixed message: a compressed flag (0: we offer no grpc-accept-encoding) and a big-endian length.
    if (data.size() < 5) {
      finish({GrpcCode::kInternal, "no message returned for unary request"});
      return;
    }
    uint32_t len = (static_cast<uint32_t>(static_cast<uint8_t>(data[1])) << 24) |
                   (static_cast<uint32_t>(static_cast<uint8_t>(data[2])) << 16) |
                   (static_cast<uint32_t>(static_cast<uint8_t>(data[3])) << 8) |
                   static_cast<uint32_t>(static_cast<uint8_t>(data[4]));
    if (data[0] != 0) {
      finish({GrpcCode::kInternal, "the agent sent a compressed message, none was offered"});
      return;
    }
    if (data.size() - 5 != len) {
      finish({GrpcCode::kInternal,
              fmt::format("the agent's response frame says {} bytes, {} arrived", len, data.size() - 5)});
      return;
    }
    response = data.substr(5);
    finish({GrpcCode::kOk, ""});
  }

  static ssize_t readRequest(nghttp2_session*, int32_t, uint8_t* buf, size_t length, uint32_t* flags,
                             nghttp2_data_source*, void* user) {
    auto* st = static_cast<State*>(user);
    size_t n = std::min(length, st->request.size() - st->request_sent);
    std::memcpy(buf, st->request.data() + st->request_sent, n);
    st->request_sent += n;
    if (st->request_sent == st->request.size()) {
      *flags |= NGHTTP2_DATA_FLAG_EOF;
    }
    return static_cast<ssize_t>(n);
  }

  static int onHeader(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name, size_t namelen,
                      const uint8_t* value, size_t valuelen, uint8_t, void* user) {
    auto* st = static_cast<State*>(user);
    if (frame->hd.type != NGHTTP2_HEADERS || frame->hd.stream_id != st->stream_id) {
      return 0;
    }
    std::string_view n(reinterpret_cast<const char*>(name), namelen);
    std::string_view v(reinterpret_cast<const char*>(value), valuelen);
    if (n == ":status") {
      int code = 0;
      for (char c : v) {
        code = (c >= '0' && c <= '9' && code < 1000) ? code * 10 + (c - '0') : 1000;
      }
      st->http_status = code;
    } else if (n == "grpc-status") {
      st->have_grpc_status = true;
      st->grpc_status = v;
    } else if (n == "grpc-message") {
      st->grpc_message = v;
    }
    return 0;
  }

  static int onData(nghttp2_session*, uint8_t, int32_t stream_id, const uint8_t* data, size_t len, void* user) {
    auto* st = static_cast<State*>(user);
    if (stream_id != st->stream_id) {
      return 0;
    }
    if (st->data.size() + len > kMaxResponseBytes + 5) {
      st->too_large = true;
      st->streamClosed(NGHTTP2_NO_ERROR);
      return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    st->data.append(reinterpret_cast<const char*>(data), len);
    return 0;
  }

  static int onFrameRecv(nghttp2_session*, const nghttp2_frame* frame, void* user) {
    if (frame->hd.type == NGHTTP2_GOAWAY) {
      static_cast<State*>(user)->goaway = true;
    }
    return 0;
  }

  static int onStreamClose(nghttp2_session*, int32_t stream_id, uint32_t error_code, void* user) {
    auto* st = static_cast<State*>(user);
    if (stream_id == st->stream_id) {
      st->streamClosed(error_code);
    }
    return 0;
  }

  // Moves what nghttp2 has queued (preface, SETTINGS and their ACKs, the request, WINDOW_UPDATEs) to output.
  void drain() {
    while (!done) {
      const uint8_t* bytes = nullptr;
      ssize_t n = nghttp2_session_mem_send(session, &bytes);
      if (n < 0) {
        finish({GrpcCode::kInternal, fmt::format("HTTP/2: {}", nghttp2_strerror(static_cast<int>(n)))});
        return;
      }
      if (n == 0) {
        return;
      }
      output.append(reinterpret_cast<const char*>(bytes), static_cast<size_t>(n));
    }
  }
};

UnaryExchange::UnaryExchange(const std::string& method_path, const std::string& request,
                             std::chrono::milliseconds timeout)
    : state_(std::make_unique<State>()) {
  State& st = *state_;
  st.request.reserve(request.size() + 5);
  st.request.push_back('\0');
  for (int shift = 24; shift >= 0; shift -= 8) {
    st.request.push_back(static_cast<char>((request.size() >> shift) & 0xff));
  }
  st.request += request;

  nghttp2_session_callbacks* callbacks = nullptr;
  if (nghttp2_session_callbacks_new(&callbacks) != 0) {
    st.finish({GrpcCode::kResourceExhausted, "HTTP/2: out of memory"});
    return;
  }
  nghttp2_session_callbacks_set_on_header_callback(callbacks, &State::onHeader);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, &State::onData);
  nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, &State::onStreamClose);
  nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, &State::onFrameRecv);
  int rv = nghttp2_session_client_new(&st.session, callbacks, &st);
  nghttp2_session_callbacks_del(callbacks);
  if (rv != 0) {
    st.finish({GrpcCode::kResourceExhausted, fmt::format("HTTP/2: {}", nghttp2_strerror(rv))});
    return;
  }
  nghttp2_settings_entry settings[] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0}};
  nghttp2_submit_settings(st.session, NGHTTP2_FLAG_NONE, settings, 1);

  // What grpc++ sends for a unary call (PROTOCOL-HTTP2.md, "Requests"); the agent's server reads :path,
  // content-type and grpc-timeout. A unix socket has no host name: grpc++ uses "localhost" as authority too.
  std::string deadline = grpcTimeoutValue(timeout);
  nghttp2_nv headers[] = {
      header(":method", "POST"),
      header(":scheme", "http"),
      header(":path", method_path),
      header(":authority", "localhost"),
      header("content-type", "application/grpc"),
      header("te", "trailers"),
      header("grpc-timeout", deadline),
      header("user-agent", "plexus-cni"),
  };
  nghttp2_data_provider body{};
  body.read_callback = &State::readRequest;
  st.stream_id = nghttp2_submit_request(st.session, nullptr, headers, sizeof(headers) / sizeof(headers[0]), &body,
                                        nullptr);
  if (st.stream_id < 0) {
    st.finish({GrpcCode::kInternal, fmt::format("HTTP/2: {}", nghttp2_strerror(st.stream_id))});
    return;
  }
  st.drain();
}

UnaryExchange::~UnaryExchange() {
  if (state_->session != nullptr) {
    nghttp2_session_del(state_->session);
  }
}

std::string UnaryExchange::takeOutput() {
  std::string out;
  out.swap(state_->output);
  return out;
}

void UnaryExchange::feed(const uint8_t* data, size_t len) {
  State& st = *state_;
  if (st.done) {
    return;
  }
  ssize_t n = nghttp2_session_mem_recv(st.session, data, len);
  if (n < 0) {
    // A callback that gave up has set the status already; otherwise the agent broke the protocol.
    st.finish({GrpcCode::kInternal, fmt::format("HTTP/2 from the agent: {}", nghttp2_strerror(static_cast<int>(n)))});
    return;
  }
  st.drain();
  if (!st.done && nghttp2_session_want_read(st.session) == 0 && nghttp2_session_want_write(st.session) == 0) {
    // The session ended without closing our stream: the agent's GOAWAY, or nghttp2 gave up on bytes that break
    // HTTP/2 (it queues its own GOAWAY and stops). UNAVAILABLE either way, as grpc++ reports a connection that
    // fails; the message tells them apart.
    st.finish({GrpcCode::kUnavailable, st.goaway ? "the agent ended the connection (GOAWAY) before answering"
                                                 : "the agent's side of the connection is not HTTP/2"});
  }
}

void UnaryExchange::connectionLost(const std::string& why) {
  state_->finish({GrpcCode::kUnavailable, why});
}

bool UnaryExchange::done() const { return state_->done; }

const GrpcStatus& UnaryExchange::status() const { return state_->status; }

const std::string& UnaryExchange::response() const { return state_->response; }

namespace {

using Clock = std::chrono::steady_clock;

int remainingMs(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left <= 0 ? 0 : static_cast<int>(std::min<int64_t>(left, 1 << 30));
}

GrpcStatus deadlineExceeded() { return {GrpcCode::kDeadlineExceeded, "Deadline Exceeded"}; }

// A connected, non-blocking socket, or the status to report.
GrpcStatus connectUnix(const std::string& path, Clock::time_point deadline, datapath::UniqueFd* out) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    return {GrpcCode::kUnavailable, fmt::format("socket path {} is longer than {} bytes", path,
                                                sizeof(addr.sun_path) - 1)};
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  datapath::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) {
    return {GrpcCode::kUnavailable, fmt::format("socket: {}", std::strerror(errno))};
  }
  // A listener whose backlog is full makes connect() wait: SO_SNDTIMEO bounds that wait (unix(7)).
  int ms = remainingMs(deadline);
  if (ms == 0) {
    return deadlineExceeded();
  }
  timeval tv{ms / 1000, (ms % 1000) * 1000};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    int err = errno;
    if (err == EAGAIN || err == EINPROGRESS) {
      return deadlineExceeded();
    }
    return {GrpcCode::kUnavailable, fmt::format("connect unix:{}: {}", path, std::strerror(err))};
  }
  int flags = ::fcntl(fd.get(), F_GETFL);
  if (flags < 0 || ::fcntl(fd.get(), F_SETFL, flags | O_NONBLOCK) != 0) {
    return {GrpcCode::kInternal, fmt::format("fcntl: {}", std::strerror(errno))};
  }
  *out = std::move(fd);
  return {};
}

}  // namespace

GrpcStatus callUnary(const std::string& socket_path, const std::string& method_path, const std::string& request,
                     std::chrono::milliseconds timeout, std::string* response) {
  const Clock::time_point deadline = Clock::now() + timeout;
  datapath::UniqueFd fd;
  if (GrpcStatus s = connectUnix(socket_path, deadline, &fd); !s.ok()) {
    return s;
  }
  UnaryExchange call(method_path, request, timeout);
  std::string out = call.takeOutput();
  size_t sent = 0;
  uint8_t buf[16384];
  while (!call.done()) {
    int ms = remainingMs(deadline);
    if (ms == 0) {
      return deadlineExceeded();
    }
    pollfd p{fd.get(), static_cast<short>(POLLIN | (sent < out.size() ? POLLOUT : 0)), 0};
    int ready = ::poll(&p, 1, ms);
    if (ready < 0 && errno != EINTR) {
      return {GrpcCode::kInternal, fmt::format("poll: {}", std::strerror(errno))};
    }
    if (ready <= 0) {
      continue;
    }
    if ((p.revents & POLLOUT) != 0 && sent < out.size()) {
      // MSG_NOSIGNAL: an agent that died must give EPIPE here, not SIGPIPE to the plugin.
      ssize_t n = ::send(fd.get(), out.data() + sent, out.size() - sent, MSG_NOSIGNAL);
      if (n > 0) {
        sent += static_cast<size_t>(n);
      } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
        call.connectionLost(fmt::format("write to unix:{}: {}", socket_path, std::strerror(errno)));
      }
    }
    if (!call.done() && (p.revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
      ssize_t n = ::read(fd.get(), buf, sizeof(buf));
      if (n > 0) {
        call.feed(buf, static_cast<size_t>(n));
      } else if (n == 0) {
        call.connectionLost(fmt::format("the agent on unix:{} closed the connection", socket_path));
      } else if (errno != EAGAIN && errno != EINTR) {
        call.connectionLost(fmt::format("read from unix:{}: {}", socket_path, std::strerror(errno)));
      }
    }
    if (sent == out.size()) {
      out = call.takeOutput();
      sent = 0;
    } else {
      out += call.takeOutput();
    }
  }
  if (call.status().ok()) {
    *response = call.response();
  }
  return call.status();
}

}  // namespace plexus::cni
