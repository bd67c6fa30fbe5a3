#include "store/arena.h"

#include <hwloc.h>
#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <utility>

namespace hoplite::store {
namespace {

// Binds [base, base+size) to the NUMA node(s) near the calling thread. On a
// single-node machine this is a no-op worth skipping; failure is not fatal
// (the memory still works, only slower), so it is reported, not returned.
std::string bind_near_caller(void* base, std::uint64_t size) {
  hwloc_topology_t topo;
  if (hwloc_topology_init(&topo) != 0) return "not bound (hwloc init failed)";
  std::string result;
  if (hwloc_topology_load(topo) != 0) {
    result = "not bound (hwloc load failed)";
  } else if (hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_NUMANODE) <= 1) {
    result = "single NUMA node";
  } else {
    hwloc_cpuset_t cpus = hwloc_bitmap_alloc();
    if (hwloc_get_cpubind(topo, cpus, HWLOC_CPUBIND_THREAD) == 0 &&
        hwloc_set_area_membind(topo, base, size, cpus, HWLOC_MEMBIND_BIND, 0) == 0) {
      result = "bound near the progress thread's CPUs";
    } else {
      result = std::string("not bound: ") + std::strerror(errno);
    }
    hwloc_bitmap_free(cpus);
  }
  hwloc_topology_destroy(topo);
  return result;
}

}  // namespace

Result<Arena> Arena::create(std::uint64_t capacity) {
  if (capacity == 0) return invalid_argument("store capacity must be > 0");
  void* p =
      mmap(nullptr, capacity, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) {
    return capacity_error("cannot map a store of " + std::to_string(capacity) +
                          " bytes: " + std::strerror(errno));
  }
  // Transparent huge pages where the kernel offers them on request (Debian's
  // default is "madvise"): a 64 MiB object then costs 32 page faults when
  // its memory is first touched instead of 16384, which on a loaded node
  // was a tenth of an allreduce's system time (docs/perf.md). Advice only:
  // a kernel without THP ignores it.
  std::string placement = bind_near_caller(p, capacity);
  placement += madvise(p, capacity, MADV_HUGEPAGE) == 0 ? ", huge pages" : ", small pages";
  return Arena(static_cast<std::byte*>(p), capacity, std::move(placement));
}

Arena::Arena(Arena&& o) noexcept
    : base_(std::exchange(o.base_, nullptr)),
      size_(std::exchange(o.size_, 0)),
      placement_(std::move(o.placement_)) {}

Arena& Arena::operator=(Arena&& o) noexcept {
  if (this != &o) {
    if (base_) munmap(base_, size_);
    base_ = std::exchange(o.base_, nullptr);
    size_ = std::exchange(o.size_, 0);
    placement_ = std::move(o.placement_);
  }
  return *this;
}

Arena::~Arena() {
  if (base_) munmap(base_, size_);
}

}  // namespace hoplite::store
