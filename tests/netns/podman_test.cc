// A real runtime: podman (CNI backend) runs a container on a network whose conflist uses plexus-cni.
#include <filesystem>
#include <fstream>

#include <catch2/catch.hpp>

#include "node_fixture.h"

using namespace plexus::testing;
namespace fs = std::filesystem;

namespace {
void writeFile(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
}

// A rootfs holding only a static busybox and the applets the test uses; no image pull needed.
std::string makeRootfs(const std::string& dir) {
  std::string root = dir + "/rootfs";
  fs::create_directories(root + "/bin");
  for (const char* d : {"proc", "sys", "dev", "etc", "tmp", "run"}) {
    fs::create_directories(root + "/" + d);
  }
  fs::copy_file("/bin/busybox", root + "/bin/busybox");
  for (const char* applet : {"sh", "ip", "ping", "sleep", "cat", "grep"}) {
    fs::create_symlink("busybox", root + "/bin/" + applet);
  }
  return root;
}
}  // namespace

TEST_CASE("podman runs a container on a plexus network", "[netns][podman]") {
  REQUIRE(fs::exists("/bin/busybox"));
  REQUIRE(sh("command -v podman").exit_code == 0);
  NodeFixture node("10.243.0.0/24");
  Pod peer = node.addPod("peer");

  std::string dir = node.dir() + "/podman";
  fs::create_directories(dir + "/net.d");
  std::string rootfs = makeRootfs(dir);
  std::string cni_dir = fs::path(cniBinary()).parent_path().string();
  writeFile(dir + "/containers.conf",
            "[network]\nnetwork_backend = \"cni\"\n"
            "cni_plugin_dirs = [\"" + cni_dir + "\", \"/usr/lib/cni\"]\n"
            "network_config_dir = \"" + dir + "/net.d\"\n"
            "[engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n"
            "events_logfile_path = \"" + dir + "/events.log\"\n"
            "tmp_dir = \"" + dir + "/tmp\"\n"
            "[containers]\ndefault_ulimits = [\"nofile=20000:20000\", \"nproc=32768:32768\"]\n");
  writeFile(dir + "/storage.conf", "[storage]\ndriver = \"overlay\"\ngraphroot = \"" + dir +
                                       "/graph\"\nrunroot = \"" + dir + "/run\"\n");
  nlohmann::json list = {{"cniVersion", "1.0.0"},
                         {"name", "plexusnet"},
                         {"plugins", {{{"type", "plexus-cni"}, {"socket", node.socket()}}}}};
  writeFile(dir + "/net.d/plexusnet.conflist", list.dump(2));

  std::string env = "CONTAINERS_CONF=" + dir + "/containers.conf CONTAINERS_STORAGE_CONF=" + dir + "/storage.conf ";
  std::string name = uniqueName("pm");
  auto run = sh(env + "podman run --rm --name " + name + " --network plexusnet --rootfs " + rootfs +
                    " /bin/sh -c 'ip -4 -o addr show eth0; ping -c1 -W3 " + peer.ip + " && echo PING_OK'",
                std::chrono::seconds(90));
  INFO("podman: " << run.out << run.err << "\nagent log:\n" << node.agent().log());
  CHECK(run.exit_code == 0);
  CHECK(run.out.find("inet 10.243.0.") != std::string::npos);
  CHECK(run.out.find("PING_OK") != std::string::npos);

  // --rm ran DEL: only the peer is left.
  CHECK(node.cliJson({"endpoint", "list"}).size() == 1);
  CHECK(node.hostLxcCount() == 1);
  sh(env + "podman rm -f " + name + " >/dev/null 2>&1");
  sh("umount -R " + dir + "/graph >/dev/null 2>&1; umount -R " + dir + "/run >/dev/null 2>&1");
}
