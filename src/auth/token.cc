#include "auth/token.h"

#include <fcntl.h>
#include <pwd.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <vector>

#include "common/hex.h"

namespace hoplite::auth {
namespace {

constexpr std::size_t kMaxTokenFile = 4096;

Status os_error(const std::string& what, int err) {
  return Status(StatusCode::kInternal, what + ": " + std::strerror(err));
}

// RAII for a file descriptor.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

std::string trim(std::string s) {
  auto nl = s.find_first_of("\r\n");
  if (nl != std::string::npos) s.resize(nl);
  const char* ws = " \t";
  auto b = s.find_first_not_of(ws);
  if (b == std::string::npos) return {};
  auto e = s.find_last_not_of(ws);
  return s.substr(b, e - b + 1);
}

}  // namespace

std::string default_token_path() {
  const char* home = std::getenv("HOME");
  std::string dir = home && *home ? home : "";
  if (dir.empty()) {
    if (const passwd* pw = ::getpwuid(::geteuid()); pw && pw->pw_dir) dir = pw->pw_dir;
  }
  return dir.empty() ? std::string() : dir + "/.hoplite/token";
}

Result<std::string> read_token_file(const std::string& path) {
  // O_NOFOLLOW: a symlink planted in a shared directory must not redirect us.
  Fd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (fd.get() < 0) {
    if (errno == ENOENT) return not_found("token file " + path + " does not exist");
    return invalid_argument("token file " + path + ": " + std::strerror(errno));
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return os_error("stat " + path, errno);
  if (!S_ISREG(st.st_mode)) return invalid_argument("token file " + path + " is not a regular file");
  if (st.st_uid != ::geteuid())
    return invalid_argument("token file " + path + " belongs to uid " + std::to_string(st.st_uid) +
                            ", not to this user");
  if ((st.st_mode & 077) != 0) {
    return invalid_argument("token file " + path +
                            " is accessible by group or others (chmod 600 it): a shared secret "
                            "others can read authenticates nobody");
  }
  if (st.st_size > static_cast<off_t>(kMaxTokenFile))
    return invalid_argument("token file " + path + " is larger than 4 KiB");
  std::string text(static_cast<std::size_t>(st.st_size), '\0');
  std::size_t got = 0;
  while (got < text.size()) {
    ssize_t n = ::read(fd.get(), text.data() + got, text.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return os_error("read " + path, errno);
    if (n == 0) break;
    got += static_cast<std::size_t>(n);
  }
  text.resize(got);
  std::string token = trim(std::move(text));
  if (token.empty()) return invalid_argument("token file " + path + " is empty");
  return token;
}

Result<std::string> random_token() {
  std::vector<std::uint8_t> bytes(32);
  std::size_t got = 0;
  while (got < bytes.size()) {
    ssize_t n = ::getrandom(bytes.data() + got, bytes.size() - got, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return os_error("getrandom", errno);
    got += static_cast<std::size_t>(n);
  }
  return to_hex(bytes);
}

Result<std::string> read_or_create_token_file(const std::string& path) {
  auto existing = read_token_file(path);
  if (existing.is_ok() || existing.status().code() != StatusCode::kNotFound) return existing;
  auto slash = path.rfind('/');
  if (slash != std::string::npos && slash > 0) {
    std::string dir = path.substr(0, slash);
    if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return os_error("mkdir " + dir, errno);
  }
  auto token = random_token();
  if (!token.is_ok()) return token.status();
  // Write a private temporary file, then link it into place: link() fails if
  // another launcher won the race, and then its token is the one to use.
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  {
    Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (fd.get() < 0) return os_error("create " + tmp, errno);
    std::string line = token.value() + "\n";
    if (::write(fd.get(), line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
      int err = errno;
      ::unlink(tmp.c_str());
      return os_error("write " + tmp, err);
    }
  }
  int rc = ::link(tmp.c_str(), path.c_str());
  int err = errno;
  ::unlink(tmp.c_str());
  if (rc != 0 && err != EEXIST) return os_error("link " + path, err);
  return read_token_file(path);
}

}  // namespace hoplite::auth
