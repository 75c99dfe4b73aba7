// plexus-cni's own gRPC client (cni/src/grpc_unary.cc) against a real grpc++ server on a unix socket, and against
// sockets that misbehave: every outcome is a status with a code and a message, within the deadline.
#include <catch2/catch.hpp>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>

#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/grpcpp.h>

#include "plexus/cni/grpc_unary.h"
#include "plexus/datapath/fd.h"

using namespace plexus::cni;
using namespace std::chrono_literals;

namespace {

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/plexus-grpc-unary.XXXXXX";
    path_ = ::mkdtemp(tmpl);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::string bytesOf(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  std::string out;
  if (buffer.Dump(&slices).ok()) {
    for (const auto& s : slices) {
      out.append(reinterpret_cast<const char*>(s.begin()), s.size());
    }
  }
  return out;
}

// One unary call per method, by path:
//   /t.S/Echo   answers the request's bytes, reversed;
//   /t.S/Fail   fails with the status code and message the request names ("<code>:<message>"), with no message
//               sent first: grpc++ then answers Trailers-Only (grpc-status in the response headers);
//   /t.S/Slow   never answers (until the client goes away);
//   other       the default: UNIMPLEMENTED.
class TestService : public grpc::CallbackGenericService {
 public:
  grpc::ServerGenericBidiReactor* CreateReactor(grpc::GenericCallbackServerContext* ctx) override {
    const std::string method = ctx->method();
    if (method != "/t.S/Echo" && method != "/t.S/Fail" && method != "/t.S/Slow") {
      return grpc::CallbackGenericService::CreateReactor(ctx);
    }
    class Reactor : public grpc::ServerGenericBidiReactor {
     public:
      explicit Reactor(std::string method) : method_(std::move(method)) { StartRead(&request_); }
      void OnReadDone(bool ok) override {
        if (!ok) {
          Finish(grpc::Status(grpc::StatusCode::INTERNAL, "no request"));
          return;
        }
        std::string in = bytesOf(request_);
        if (method_ == "/t.S/Echo") {
          std::string out(in.rbegin(), in.rend());
          grpc::Slice slice(out);
          reply_ = grpc::ByteBuffer(&slice, 1);
          StartWriteAndFinish(&reply_, grpc::WriteOptions(), grpc::Status::OK);
        } else if (method_ == "/t.S/Fail") {
          auto colon = in.find(':');
          Finish(grpc::Status(static_cast<grpc::StatusCode>(std::atoi(in.substr(0, colon).c_str())),
                              in.substr(colon + 1)));
        }
        // Slow: nothing until the call is cancelled.
      }
      void OnCancel() override {
        if (method_ == "/t.S/Slow") {
          Finish(grpc::Status::CANCELLED);
        }
      }
      void OnDone() override { delete this; }

     private:
      std::string method_;
      grpc::ByteBuffer request_;
      grpc::ByteBuffer reply_;
    };
    return new Reactor(method);
  }
};

class TestServer {
 public:
  explicit TestServer(const std::string& socket) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("unix:" + socket, grpc::InsecureServerCredentials());
    builder.RegisterCallbackGenericService(&service_);
    server_ = builder.BuildAndStart();
  }
  ~TestServer() { server_->Shutdown(std::chrono::system_clock::now() + 1s); }
  bool started() const { return server_ != nullptr; }

 private:
  TestService service_;
  std::unique_ptr<grpc::Server> server_;
};

// A listening unix socket that this test drives by hand.
plexus::datapath::UniqueFd listenOn(const std::string& path) {
  plexus::datapath::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  REQUIRE(::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
  REQUIRE(::listen(fd.get(), 8) == 0);
  return fd;
}

}  // namespace

TEST_CASE("grpc-message decoding, HTTP and HTTP/2 error mapping, grpc-timeout", "[unit][cni]") {
  CHECK(percentDecode("10.0.0.7 is taken%3A 100%25") == "10.0.0.7 is taken: 100%");
  CHECK(percentDecode("caf%C3%A9") == "caf\xc3\xa9");
  CHECK(percentDecode("bad %zz and %4") == "bad %zz and %4");  // malformed escapes are kept
  CHECK(percentDecode("") == "");
  CHECK(codeFromHttpStatus(503) == GrpcCode::kUnavailable);
  CHECK(codeFromHttpStatus(404) == GrpcCode::kUnimplemented);
  CHECK(codeFromHttpStatus(400) == GrpcCode::kInternal);
  CHECK(codeFromHttpStatus(500) == GrpcCode::kUnknown);
  CHECK(codeFromHttp2Error(7) == GrpcCode::kUnavailable);  // REFUSED_STREAM: not processed
  CHECK(codeFromHttp2Error(8) == GrpcCode::kCancelled);
  CHECK(codeFromHttp2Error(2) == GrpcCode::kInternal);
  CHECK(grpcTimeoutValue(60s) == "60000m");
  CHECK(grpcTimeoutValue(0ms) == "1m");
  CHECK(grpcTimeoutValue(std::chrono::hours(1000000)) == "99999999S");
}

TEST_CASE("a unary call to a grpc++ server: the response, and statuses from Trailers-Only answers", "[unit][cni]") {
  TempDir dir;
  std::string sock = dir.path() + "/agent.sock";
  TestServer server(sock);
  REQUIRE(server.started());
  std::string reply;

  SECTION("the response message, and an empty one") {
    GrpcStatus s = callUnary(sock, "/t.S/Echo", "abcdef", 5s, &reply);
    REQUIRE(s.ok());
    CHECK(reply == "fedcba");
    std::string with_nul("ab\0c", 4);
    REQUIRE(callUnary(sock, "/t.S/Echo", with_nul, 5s, &reply).ok());
    CHECK(reply == std::string("c\0ba", 4));
    REQUIRE(callUnary(sock, "/t.S/Echo", "", 5s, &reply).ok());
    CHECK(reply.empty());
  }
  SECTION("a large request and response cross several DATA frames and flow-control windows") {
    std::string big(300 * 1024, 'x');
    big[0] = 'a';
    REQUIRE(callUnary(sock, "/t.S/Echo", big, 5s, &reply).ok());
    REQUIRE(reply.size() == big.size());
    CHECK(reply.back() == 'a');
  }
  SECTION("the agent's status code and message, percent-decoded") {
    GrpcStatus s = callUnary(sock, "/t.S/Fail", "6:address 10.0.0.7 is taken: 100% caf\xc3\xa9", 5s, &reply);
    CHECK(s.code == GrpcCode::kAlreadyExists);
    CHECK(s.message == "address 10.0.0.7 is taken: 100% caf\xc3\xa9");
    s = callUnary(sock, "/t.S/Fail", "3:bad request", 5s, &reply);
    CHECK(s.code == GrpcCode::kInvalidArgument);
    CHECK(s.message == "bad request");
    CHECK(callUnary(sock, "/t.S/Fail", "5:", 5s, &reply).code == GrpcCode::kNotFound);
  }
  SECTION("an unknown method is UNIMPLEMENTED") {
    CHECK(callUnary(sock, "/t.S/Nope", "x", 5s, &reply).code == GrpcCode::kUnimplemented);
  }
  SECTION("a server that does not answer in time: DEADLINE_EXCEEDED at the deadline") {
    auto t0 = std::chrono::steady_clock::now();
    GrpcStatus s = callUnary(sock, "/t.S/Slow", "x", 300ms, &reply);
    auto took = std::chrono::steady_clock::now() - t0;
    CHECK(s.code == GrpcCode::kDeadlineExceeded);
    CHECK(took >= 250ms);
    CHECK(took < 3s);
  }
}

TEST_CASE("a unary call to a socket that misbehaves ends with a status, in time", "[unit][cni]") {
  TempDir dir;
  std::string sock = dir.path() + "/agent.sock";
  std::string reply;

  SECTION("no socket file") {
    GrpcStatus s = callUnary(sock, "/t.S/Echo", "x", 1s, &reply);
    CHECK(s.code == GrpcCode::kUnavailable);
    CHECK(s.message.find(sock) != std::string::npos);
  }
  SECTION("a socket file nobody listens on (an agent killed with -9)") {
    { auto fd = listenOn(sock); }
    GrpcStatus s = callUnary(sock, "/t.S/Echo", "x", 1s, &reply);
    CHECK(s.code == GrpcCode::kUnavailable);
    CHECK(s.message.find("refused") != std::string::npos);
  }
  SECTION("a listener that never accepts or answers") {
    auto fd = listenOn(sock);
    auto t0 = std::chrono::steady_clock::now();
    CHECK(callUnary(sock, "/t.S/Echo", "x", 300ms, &reply).code == GrpcCode::kDeadlineExceeded);
    CHECK(std::chrono::steady_clock::now() - t0 < 3s);
  }
  SECTION("a peer that closes, or that answers bytes that are not HTTP/2") {
    auto fd = listenOn(sock);
    bool garbage = GENERATE(false, true);
    std::thread peer([&] {
      plexus::datapath::UniqueFd conn(::accept(fd.get(), nullptr, nullptr));
      char buf[4096];
      [[maybe_unused]] ssize_t n = ::read(conn.get(), buf, sizeof(buf));
      if (garbage) {
        const char junk[] = "HTTP/1.1 400 Bad Request\r\n\r\n";
        n = ::write(conn.get(), junk, sizeof(junk) - 1);
        std::this_thread::sleep_for(100ms);
      }
    });
    GrpcStatus s = callUnary(sock, "/t.S/Echo", "x", 2s, &reply);
    peer.join();
    CHECK_FALSE(s.ok());
    CHECK(s.code != GrpcCode::kDeadlineExceeded);
    CHECK_FALSE(s.message.empty());
    CHECK(s.code == GrpcCode::kUnavailable);
    if (garbage) {
      CHECK(s.message.find("not HTTP/2") != std::string::npos);
    }
  }
  SECTION("a socket path longer than a unix address holds") {
    std::string long_path = dir.path() + "/" + std::string(120, 's');
    CHECK(callUnary(long_path, "/t.S/Echo", "x", 1s, &reply).code == GrpcCode::kUnavailable);
  }
}

TEST_CASE("the exchange survives whatever bytes arrive", "[unit][cni]") {
  UnaryExchange call("/t.S/Echo", "x", 1s);
  std::string first = call.takeOutput();
  CHECK(first.rfind("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 0) == 0);  // the client preface opens the connection
  const uint8_t junk[] = {0, 0, 4, 0xff, 0, 0, 0, 0, 1, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  call.feed(junk, sizeof(junk));
  call.feed(junk, sizeof(junk));
  call.connectionLost("gone");
  REQUIRE(call.done());
  CHECK_FALSE(call.status().ok());
}

namespace {

// HTTP/2 frames as a server writes them (RFC 9113 §4.1), headers as HPACK literals without Huffman (RFC 7541 §6.2.2)
// or ":status: 200" from the static table (index 8).
std::string frame(uint8_t type, uint8_t flags, uint32_t stream, const std::string& payload) {
  std::string f;
  f.push_back(static_cast<char>(payload.size() >> 16));
  f.push_back(static_cast<char>(payload.size() >> 8));
  f.push_back(static_cast<char>(payload.size()));
  f.push_back(static_cast<char>(type));
  f.push_back(static_cast<char>(flags));
  for (int shift = 24; shift >= 0; shift -= 8) {
    f.push_back(static_cast<char>(stream >> shift));
  }
  return f + payload;
}
std::string literal(const std::string& name, const std::string& value) {
  return std::string(1, '\0') + static_cast<char>(name.size()) + name + static_cast<char>(value.size()) + value;
}
const std::string kStatus200 = "\x88";
constexpr uint8_t kData = 0, kHeaders = 1, kRstStream = 3, kSettings = 4, kGoaway = 7;
constexpr uint8_t kEndStream = 1, kEndHeaders = 4;
std::string serverPreface() { return frame(kSettings, 0, 0, "") + frame(kSettings, 1, 0, ""); }
std::string grpcMessage(const std::string& body, char compressed = 0) {
  std::string m(1, compressed);
  for (int shift = 24; shift >= 0; shift -= 8) {
    m.push_back(static_cast<char>(body.size() >> shift));
  }
  return m + body;
}

GrpcStatus exchange(const std::string& server_bytes, std::string* response = nullptr) {
  UnaryExchange call("/plexus.v1.Cni/Add", "req", 1s);
  (void)call.takeOutput();
  call.feed(reinterpret_cast<const uint8_t*>(server_bytes.data()), server_bytes.size());
  call.connectionLost("the test's server closed");
  if (response != nullptr) {
    *response = call.response();
  }
  return call.status();
}

}  // namespace

TEST_CASE("the exchange maps each shape of answer to a status", "[unit][cni]") {
  const std::string headers = kStatus200 + literal("content-type", "application/grpc");
  std::string response;

  // Headers, one message, trailers: OK with the message.
  GrpcStatus s = exchange(serverPreface() + frame(kHeaders, kEndHeaders, 1, headers) +
                              frame(kData, 0, 1, grpcMessage("hello")) +
                              frame(kHeaders, kEndHeaders | kEndStream, 1, literal("grpc-status", "0")),
                          &response);
  CHECK(s.ok());
  CHECK(response == "hello");

  // Trailers-Only: grpc-status and grpc-message in the only HEADERS frame.
  s = exchange(serverPreface() + frame(kHeaders, kEndHeaders | kEndStream, 1,
                                       headers + literal("grpc-status", "6") +
                                           literal("grpc-message", "10.0.0.7 is taken%3A 100%25")));
  CHECK(s.code == GrpcCode::kAlreadyExists);
  CHECK(s.message == "10.0.0.7 is taken: 100%");

  // No grpc-status: the HTTP status decides.
  s = exchange(serverPreface() + frame(kHeaders, kEndHeaders | kEndStream, 1, literal(":status", "503")));
  CHECK(s.code == GrpcCode::kUnavailable);
  CHECK(s.message.find("503") != std::string::npos);

  // A grpc-status that is no code is UNKNOWN.
  CHECK(exchange(serverPreface() + frame(kHeaders, kEndHeaders | kEndStream, 1,
                                         headers + literal("grpc-status", "x1")))
            .code == GrpcCode::kUnknown);

  // The stream reset before an answer: REFUSED_STREAM is UNAVAILABLE (retry), others INTERNAL.
  CHECK(exchange(serverPreface() + frame(kRstStream, 0, 1, std::string("\0\0\0\x07", 4))).code ==
        GrpcCode::kUnavailable);
  CHECK(exchange(serverPreface() + frame(kRstStream, 0, 1, std::string("\0\0\0\x02", 4))).code ==
        GrpcCode::kInternal);

  // GOAWAY that leaves the stream unprocessed, and a connection that ends: UNAVAILABLE.
  s = exchange(serverPreface() + frame(kGoaway, 0, 0, std::string(8, '\0')));
  CHECK(s.code == GrpcCode::kUnavailable);
  CHECK(s.message.find("not HTTP/2") == std::string::npos);
  CHECK(exchange(serverPreface()).code == GrpcCode::kUnavailable);

  // OK with a broken message: none, a length that lies, a compressed flag none was offered for.
  auto okWith = [&](const std::string& data) {
    return exchange(serverPreface() + frame(kHeaders, kEndHeaders, 1, headers) + frame(kData, 0, 1, data) +
                    frame(kHeaders, kEndHeaders | kEndStream, 1, literal("grpc-status", "0")));
  };
  CHECK(okWith("").code == GrpcCode::kInternal);
  CHECK(okWith(grpcMessage("hello").substr(0, 7)).code == GrpcCode::kInternal);
  CHECK(okWith(grpcMessage("hello", 1)).code == GrpcCode::kInternal);
  CHECK(okWith(grpcMessage("")).ok());
}
