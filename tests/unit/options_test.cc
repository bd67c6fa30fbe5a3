// parse_size and NodeOptions::from_environment / validate.
//
// from_environment reads the process environment, so every test starts from
// an environment with none of the launcher or HOPLITE_* variables set, and
// leaves it that way for whatever runs next.

#include "hoplite/options.h"

#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "auth/token.h"

#include "hoplite/status.h"

namespace hoplite {
namespace {

constexpr const char* kVariables[] = {
    // hoplite-run and torchrun
    "RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
    // Open MPI, PMI, Slurm
    "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "PMI_RANK", "PMI_SIZE", "SLURM_PROCID", "SLURM_NTASKS",
    // Our own
    "HOPLITE_RANK", "HOPLITE_WORLD_SIZE", "HOPLITE_BOOTSTRAP", "HOPLITE_LISTEN_HOST", "HOPLITE_TOKEN",
    "HOPLITE_TRANSPORT", "HOPLITE_STORE_CAPACITY", "HOPLITE_CHUNK_SIZE", "HOPLITE_INLINE_THRESHOLD",
    "HOPLITE_PIPELINE_DEPTH", "HOPLITE_BOOTSTRAP_TIMEOUT_MS", "HOPLITE_TOKEN_FILE", "HOPLITE_INSECURE",
    "HOPLITE_REJOIN", "HOPLITE_REJOIN_CONTACTS"};

class FromEnvironment : public ::testing::Test {
 protected:
  // Every case runs with a token (the policy has cases of its own below)
  // and a HOME of its own, so a token file of the user running the tests
  // cannot leak in.
  void SetUp() override {
    ClearAll();
    const char* home = std::getenv("HOME");
    saved_home_ = home ? home : "";
    home_ = std::filesystem::temp_directory_path() / ("hoplite-options-" + std::to_string(::getpid()));
    std::filesystem::remove_all(home_);
    std::filesystem::create_directories(home_);
    Set("HOME", home_.string());
    Set("HOPLITE_TOKEN", "options-test-token");
  }
  void TearDown() override {
    ClearAll();
    setenv("HOME", saved_home_.c_str(), 1);
    std::filesystem::remove_all(home_);
  }
  void WriteFile(const std::filesystem::path& p, const std::string& text, mode_t mode) {
    std::filesystem::create_directories(p.parent_path());
    {
      std::ofstream f(p);
      f << text;
    }
    ASSERT_EQ(::chmod(p.c_str(), mode), 0);
  }
  std::filesystem::path home_;
  std::string saved_home_;

  static void ClearAll() {
    for (const char* v : kVariables) ASSERT_EQ(unsetenv(v), 0) << v;
  }
  static void Set(const char* name, const std::string& value) {
    ASSERT_EQ(setenv(name, value.c_str(), 1), 0) << name;
  }
  static void ExpectInvalid(const std::string& why) {
    auto o = NodeOptions::from_environment();
    ASSERT_FALSE(o.is_ok()) << why << ": accepted rank " << o->rank;
    EXPECT_EQ(o.status().code(), StatusCode::kInvalidArgument) << why;
    EXPECT_FALSE(o.status().message().empty()) << why;
  }
};

// ------------------------------------------------------------ parse_size

TEST(ParseSize, PlainBytes) {
  auto r = parse_size("4096");
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r.value(), 4096u);
  EXPECT_EQ(parse_size("0").value(), 0u);
  EXPECT_EQ(parse_size("512B").value(), 512u);
}

TEST(ParseSize, BinarySuffixes) {
  EXPECT_EQ(parse_size("64K").value(), 64u << 10);
  EXPECT_EQ(parse_size("16M").value(), 16u << 20);
  EXPECT_EQ(parse_size("2G").value(), 2ull << 30);
  EXPECT_EQ(parse_size("1KiB").value(), 1u << 10);
  EXPECT_EQ(parse_size("3MiB").value(), 3u << 20);
  EXPECT_EQ(parse_size("5GiB").value(), 5ull << 30);
}

TEST(ParseSize, RejectsUnknownSuffixes) {
  for (const char* s : {"12X", "12KB", "12T", "4 K", "4K ", "64Kb", "1.5G", "0x10"}) {
    auto r = parse_size(s);
    ASSERT_FALSE(r.is_ok()) << "'" << s << "' parsed as " << r.value();
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << s;
  }
}

TEST(ParseSize, RejectsMissingNumber) {
  for (const char* s : {"", "K", "G", "abc", " "}) {
    auto r = parse_size(s);
    ASSERT_FALSE(r.is_ok()) << "'" << s << "' parsed as " << r.value();
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << "'" << s << "'";
  }
}

// A size is never negative; strtoull's habit of negating "-N" modulo 2^64
// must not turn a typo into an exabyte-sized store.
TEST(ParseSize, RejectsNegativeNumbers) {
  for (const char* s : {"-1", "-64K"}) {
    auto r = parse_size(s);
    EXPECT_FALSE(r.is_ok()) << "'" << s << "' parsed as " << r.value();
    if (r.is_ok()) continue;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << s;
  }
}

TEST(ParseSize, RejectsSizesThatOverflow) {
  // 2^34 GiB = 2^64 bytes, and a number beyond u64 before any suffix.
  for (const char* s : {"17179869184G", "18014398509481984K", "99999999999999999999"}) {
    auto r = parse_size(s);
    EXPECT_FALSE(r.is_ok()) << "'" << s << "' parsed as " << r.value();
    if (r.is_ok()) continue;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << s;
  }
  // The largest representable multiple still parses.
  EXPECT_EQ(parse_size("17179869183G").value(), 17179869183ull << 30);
}

// ------------------------------------------------------ from_environment

TEST_F(FromEnvironment, TorchrunVariables) {
  Set("RANK", "2");
  Set("WORLD_SIZE", "4");
  Set("MASTER_ADDR", "10.0.0.1");
  Set("MASTER_PORT", "29500");
  auto o = NodeOptions::from_environment();
  ASSERT_TRUE(o.is_ok()) << o.status().to_string();
  EXPECT_EQ(o->rank, 2);
  EXPECT_EQ(o->world_size, 4);
  EXPECT_EQ(o->bootstrap_address, "10.0.0.1:29500");
  // Nothing else set: the documented defaults.
  const NodeOptions defaults;
  EXPECT_EQ(o->listen_host, defaults.listen_host);
  EXPECT_EQ(o->store_capacity, defaults.store_capacity);
  EXPECT_EQ(o->chunk_size, defaults.chunk_size);
  EXPECT_EQ(o->inline_threshold, defaults.inline_threshold);
  EXPECT_EQ(o->pipeline_depth, defaults.pipeline_depth);
  EXPECT_EQ(o->transport, defaults.transport);
  EXPECT_EQ(o->token, "options-test-token");  // the fixture's
  EXPECT_FALSE(o->insecure);
  EXPECT_EQ(o->bootstrap_timeout, defaults.bootstrap_timeout);
}

TEST_F(FromEnvironment, OpenMpiWithHopliteBootstrap) {
  Set("OMPI_COMM_WORLD_RANK", "1");
  Set("OMPI_COMM_WORLD_SIZE", "3");
  Set("HOPLITE_BOOTSTRAP", "head-node:7000");
  auto o = NodeOptions::from_environment();
  ASSERT_TRUE(o.is_ok()) << o.status().to_string();
  EXPECT_EQ(o->rank, 1);
  EXPECT_EQ(o->world_size, 3);
  EXPECT_EQ(o->bootstrap_address, "head-node:7000");
}

TEST_F(FromEnvironment, OpenMpiWithoutBootstrapIsAnError) {
  // mpirun provides no rendezvous address.
  Set("OMPI_COMM_WORLD_RANK", "0");
  Set("OMPI_COMM_WORLD_SIZE", "2");
  ExpectInvalid("no HOPLITE_BOOTSTRAP under mpirun");
}

TEST_F(FromEnvironment, SlurmVariables) {
  Set("SLURM_PROCID", "5");
  Set("SLURM_NTASKS", "8");
  Set("HOPLITE_BOOTSTRAP", "node001:6000");
  auto o = NodeOptions::from_environment();
  ASSERT_TRUE(o.is_ok()) << o.status().to_string();
  EXPECT_EQ(o->rank, 5);
  EXPECT_EQ(o->world_size, 8);
  EXPECT_EQ(o->bootstrap_address, "node001:6000");
}

TEST_F(FromEnvironment, PmiVariables) {
  Set("PMI_RANK", "3");
  Set("PMI_SIZE", "4");
  Set("HOPLITE_BOOTSTRAP", "127.0.0.1:5555");
  auto o = NodeOptions::from_environment();
  ASSERT_TRUE(o.is_ok()) << o.status().to_string();
  EXPECT_EQ(o->rank, 3);
  EXPECT_EQ(o->world_size, 4);
  EXPECT_EQ(o->bootstrap_address, "127.0.0.1:5555");
}

TEST_F(FromEnvironment, HopliteBootstrapOverridesMasterAddress) {
  Set("RANK", "0");
  Set("WORLD_SIZE", "1");
  Set("MASTER_ADDR", "10.0.0.1");
  Set("MASTER_PORT", "29500");
  Set("HOPLITE_BOOTSTRAP", "10.0.0.9:4000");
  auto o = NodeOptions::from_environment();
  ASSERT_TRUE(o.is_ok()) << o.status().to_string();
  EXPECT_EQ(o->bootstrap_address, "10.0.0.9:4000");
}

TEST_F(FromEnvironment, MissingRankIsInvalid) {
  Set("WORLD_SIZE", "4");
  Set("MASTER_ADDR", "10.0.0.1");
  Set("MASTER_PORT", "29500");
  ExpectInvalid("no rank");
}

TEST_F(FromEnvironment, MissingWorldSizeIsInvalid) {
  Set("RANK", "0");
  Set("MASTER_ADDR", "10.0.0.1");
  Set("MASTER_PORT", "29500");
  ExpectInvalid("no world size");
}

TEST_F(FromEnvironment, EmptyEnvironmentIsInvalid) {
  ExpectInvalid("nothing set");
}

TEST_F(FromEnvironment, MasterAddrWithoutPortIsInvalid) {
  Set("RANK", "0");
  Set("WORLD_SIZE", "2");
  Set("MASTER_ADDR", "10.0.0.1");
  ExpectInvalid("MASTER_ADDR alone");
}

TEST_F(FromEnvironment, RankMustBeInsideTheWorld) {
  Set("WORLD_SIZE", "4");
  Set("MASTER_ADDR", "10.0.0.1");
  Set("MASTER_PORT", "29500");
  for (const char* rank : {"4", "5", "-1"}) {
    Set("RANK", rank);
    ExpectInvalid(std::string("rank ") + rank + " of 4");
  }
  Set("RANK", "3");
  EXPECT_TRUE(NodeOptions::from_environment().is_ok());
}

TEST_F(FromEnvironment, WorldSizeMustBePositive) {
  Set("RANK", "0");
  Set("MASTER_ADDR", "10.0.0.1");
  Set("MASTER_PORT", "29500");
  for (const char* world : {"0", "-2"}) {
    Set("WORLD_SIZE", world);
    ExpectInvalid(std::string("world size ") + world);
  }
}

TEST_F(FromEnvironment, NonNumericRankOrWorldIsInvalid) {
  Set("MASTER_ADDR", "10.0.0.1");
  Set("MASTER_PORT", "29500");
  Set("WORLD_SIZE", "4");
  for (const char* rank : {"two", "1x", "1.0"}) {
    Set("RANK", rank);
    ExpectInvalid(std::string("rank '") + rank + "'");
  }
  Set("RANK", "1");
  Set("WORLD_SIZE", "four");
  ExpectInvalid("world size 'four'");
}

TEST_F(FromEnvironment, SizeOverridesAreParsed) {
  Set("RANK", "0");
  Set("WORLD_SIZE", "2");
  Set("HOPLITE_BOOTSTRAP", "h:1");
  Set("HOPLITE_STORE_CAPACITY", "64M");
  Set("HOPLITE_CHUNK_SIZE", "256K");
  Set("HOPLITE_INLINE_THRESHOLD", "4096");
  Set("HOPLITE_PIPELINE_DEPTH", "16");
  Set("HOPLITE_BOOTSTRAP_TIMEOUT_MS", "1500");
  Set("HOPLITE_TOKEN", "secret");
  Set("HOPLITE_LISTEN_HOST", "192.168.1.7");
  auto o = NodeOptions::from_environment();
  ASSERT_TRUE(o.is_ok()) << o.status().to_string();
  EXPECT_EQ(o->store_capacity, 64u << 20);
  EXPECT_EQ(o->chunk_size, 256u << 10);
  EXPECT_EQ(o->inline_threshold, 4096u);
  EXPECT_EQ(o->pipeline_depth, 16u);
  EXPECT_EQ(o->bootstrap_timeout.count(), 1500);
  EXPECT_EQ(o->token, "secret");
  EXPECT_EQ(o->listen_host, "192.168.1.7");
}

TEST_F(FromEnvironment, BadChunkSizeIsInvalid) {
  Set("RANK", "0");
  Set("WORLD_SIZE", "2");
  Set("HOPLITE_BOOTSTRAP", "h:1");
  // Unparseable, below 4 KiB, above 64 MiB.
  for (const char* chunk : {"12Q", "lots", "1K", "4095", "65M", "1G"}) {
    Set("HOPLITE_CHUNK_SIZE", chunk);
    ExpectInvalid(std::string("HOPLITE_CHUNK_SIZE=") + chunk);
  }
  // The bounds themselves are allowed.
  for (const char* chunk : {"4K", "64M"}) {
    Set("HOPLITE_CHUNK_SIZE", chunk);
    auto o = NodeOptions::from_environment();
    EXPECT_TRUE(o.is_ok()) << chunk << ": " << o.status().to_string();
  }
}

TEST_F(FromEnvironment, OtherOutOfRangeSettingsAreInvalid) {
  Set("RANK", "0");
  Set("WORLD_SIZE", "2");
  Set("HOPLITE_BOOTSTRAP", "h:1");
  Set("HOPLITE_STORE_CAPACITY", "512K");
  ExpectInvalid("store below 1 MiB");
  ASSERT_EQ(unsetenv("HOPLITE_STORE_CAPACITY"), 0);
  Set("HOPLITE_INLINE_THRESHOLD", "2M");
  ExpectInvalid("inline threshold above 1 MiB");
  ASSERT_EQ(unsetenv("HOPLITE_INLINE_THRESHOLD"), 0);
  Set("HOPLITE_PIPELINE_DEPTH", "0");
  ExpectInvalid("pipeline depth 0");
  Set("HOPLITE_PIPELINE_DEPTH", "257");
  ExpectInvalid("pipeline depth 257");
  ASSERT_EQ(unsetenv("HOPLITE_PIPELINE_DEPTH"), 0);
  Set("HOPLITE_TRANSPORT", "carrier-pigeon");
  ExpectInvalid("unknown transport");
  ASSERT_EQ(unsetenv("HOPLITE_TRANSPORT"), 0);
  Set("HOPLITE_BOOTSTRAP", "no-port");
  ExpectInvalid("bootstrap without a port");
}

// ------------------------------------------------------------ the token

TEST_F(FromEnvironment, NoTokenIsAnErrorThatSaysWhatToDo) {
  unsetenv("HOPLITE_TOKEN");
  Set("RANK", "0");
  Set("WORLD_SIZE", "2");
  Set("MASTER_ADDR", "127.0.0.1");
  Set("MASTER_PORT", "29500");
  auto o = NodeOptions::from_environment();
  ASSERT_FALSE(o.is_ok());
  EXPECT_EQ(o.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(o.status().message().find("no cluster token"), std::string::npos) << o.status().message();
  EXPECT_NE(o.status().message().find("HOPLITE_INSECURE"), std::string::npos) << o.status().message();
}

TEST_F(FromEnvironment, UnauthenticatedOnlyWhenAskedFor) {
  unsetenv("HOPLITE_TOKEN");
  Set("RANK", "0");
  Set("WORLD_SIZE", "2");
  Set("MASTER_ADDR", "127.0.0.1");
  Set("MASTER_PORT", "29500");
  Set("HOPLITE_INSECURE", "yes");  // only "1" counts
  EXPECT_FALSE(NodeOptions::from_environment().is_ok());
  Set("HOPLITE_INSECURE", "1");
  auto o = NodeOptions::from_environment();
  ASSERT_TRUE(o.is_ok()) << o.status().to_string();
  EXPECT_TRUE(o->insecure);
  EXPECT_TRUE(o->token.empty());
}

TEST_F(FromEnvironment, TokenComesFromTheDefaultFileInHome) {
  unsetenv("HOPLITE_TOKEN");
  Set("RANK", "1");
  Set("WORLD_SIZE", "2");
  Set("HOPLITE_BOOTSTRAP", "127.0.0.1:29500");
  WriteFile(home_ / ".hoplite" / "token", "  from-home-file \n", 0600);
  auto o = NodeOptions::from_environment();
  ASSERT_TRUE(o.is_ok()) << o.status().to_string();
  EXPECT_EQ(o->token, "from-home-file");
  // The variable wins over the file.
  Set("HOPLITE_TOKEN", "from-variable");
  EXPECT_EQ(NodeOptions::from_environment()->token, "from-variable");
}

TEST_F(FromEnvironment, TokenFileOthersCanReadIsRefused) {
  unsetenv("HOPLITE_TOKEN");
  Set("RANK", "1");
  Set("WORLD_SIZE", "2");
  Set("HOPLITE_BOOTSTRAP", "127.0.0.1:29500");
  WriteFile(home_ / ".hoplite" / "token", "leaky\n", 0644);
  auto o = NodeOptions::from_environment();
  ASSERT_FALSE(o.is_ok()) << "a world-readable token was accepted";
  EXPECT_NE(o.status().message().find("chmod 600"), std::string::npos) << o.status().message();
  // An explicit file is held to the same rule.
  WriteFile(home_ / "other", "leaky\n", 0640);
  Set("HOPLITE_TOKEN_FILE", (home_ / "other").string());
  EXPECT_FALSE(NodeOptions::from_environment().is_ok());
  ASSERT_EQ(::chmod((home_ / "other").c_str(), 0600), 0);
  auto ok = NodeOptions::from_environment();
  ASSERT_TRUE(ok.is_ok()) << ok.status().to_string();
  EXPECT_EQ(ok->token, "leaky");
}

TEST_F(FromEnvironment, TokenFileMissingEmptyOrASymlinkIsRefused) {
  EXPECT_EQ(auth::read_token_file((home_ / "absent").string()).status().code(), StatusCode::kNotFound);
  WriteFile(home_ / "empty", "\n", 0600);
  EXPECT_EQ(auth::read_token_file((home_ / "empty").string()).status().code(), StatusCode::kInvalidArgument);
  WriteFile(home_ / "real", "secret\n", 0600);
  std::filesystem::create_symlink(home_ / "real", home_ / "link");
  EXPECT_FALSE(auth::read_token_file((home_ / "link").string()).is_ok()) << "followed a symlink";
  std::filesystem::create_directories(home_ / "dir");
  EXPECT_FALSE(auth::read_token_file((home_ / "dir").string()).is_ok());
}

TEST_F(FromEnvironment, LauncherCreatesAPrivateTokenFileOnce) {
  const auto path = home_ / ".hoplite" / "token";
  auto first = auth::read_or_create_token_file(path.string());
  ASSERT_TRUE(first.is_ok()) << first.status().to_string();
  EXPECT_EQ(first->size(), 64u);
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat(path.parent_path().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  auto second = auth::read_or_create_token_file(path.string());
  ASSERT_TRUE(second.is_ok());
  EXPECT_EQ(*first, *second) << "a second launcher must find the same token";
  EXPECT_EQ(auth::read_token_file(path.string()).value(), *first);
}

// ------------------------------------------------------------- validate

// A restarted rank 0 cannot ask its own address: it needs the others'.
TEST_F(FromEnvironment, RejoinContactsAreAListAndRankZeroNeedsThem) {
  Set("RANK", "0");
  Set("WORLD_SIZE", "4");
  Set("MASTER_ADDR", "10.0.0.1");
  Set("MASTER_PORT", "29500");
  Set("HOPLITE_REJOIN", "1");
  ExpectInvalid("rank 0 rejoining with no contacts");
  Set("HOPLITE_REJOIN_CONTACTS", "10.0.0.2:4000,,10.0.0.3:4001");
  auto o = NodeOptions::from_environment();
  ASSERT_TRUE(o.is_ok()) << o.status().to_string();
  EXPECT_TRUE(o->rejoin);
  EXPECT_EQ(o->rejoin_contacts, (std::vector<std::string>{"10.0.0.2:4000", "10.0.0.3:4001"}));
  Set("HOPLITE_REJOIN_CONTACTS", "10.0.0.2");
  ExpectInvalid("a contact without a port");
}

NodeOptions Valid() {
  NodeOptions o;
  o.token = "t";
  o.rank = 0;
  o.world_size = 1;
  o.bootstrap_address = "127.0.0.1:9000";
  return o;
}

TEST(NodeOptionsValidate, DefaultsNeedRankAndWorld) {
  EXPECT_EQ(NodeOptions{}.validate().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(Valid().validate().is_ok()) << Valid().validate().to_string();
}

TEST(NodeOptionsValidate, RejectsEachBadField) {
  auto expect_invalid = [](NodeOptions o, const char* why) {
    EXPECT_EQ(o.validate().code(), StatusCode::kInvalidArgument) << why;
  };
  NodeOptions o = Valid();
  o.rank = 1;
  expect_invalid(o, "rank == world");
  o = Valid();
  o.rank = -1;
  expect_invalid(o, "negative rank");
  o = Valid();
  o.world_size = 0;
  expect_invalid(o, "empty world");
  o = Valid();
  o.bootstrap_address = "";
  expect_invalid(o, "no bootstrap");
  o = Valid();
  o.chunk_size = 4095;
  expect_invalid(o, "chunk below 4 KiB");
  o = Valid();
  o.chunk_size = (64u << 20) + 1;
  expect_invalid(o, "chunk above 64 MiB");
  o = Valid();
  o.inline_threshold = (1u << 20) + 1;
  expect_invalid(o, "inline above 1 MiB");
  o = Valid();
  o.pipeline_depth = 0;
  expect_invalid(o, "no pipeline");
  o = Valid();
  o.store_capacity = (1u << 20) - 1;
  expect_invalid(o, "store below 1 MiB");
  o = Valid();
  o.token.clear();
  expect_invalid(o, "no token and not insecure");
  o.insecure = true;
  EXPECT_TRUE(o.validate().is_ok());
  o = Valid();
  o.transport = "verbs";
  expect_invalid(o, "transport not built");
  for (const char* built : {"ucx", "tcp", "auto"}) {
    o.transport = built;
    EXPECT_TRUE(o.validate().is_ok()) << built;
  }
  EXPECT_EQ(NodeOptions{}.transport, "auto");
}

}  // namespace
}  // namespace hoplite
