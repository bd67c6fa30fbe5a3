/* The C ABI from a program compiled as C99, run as a 3-rank cluster under
 * hoplite-run: objects (put, streaming create, get, futures, remove), reduce
 * (any k of n, the inputs used), every op and dtype through the allreduce
 * helper, broadcast, reduce_to, gather and allgather, the errors a caller
 * sees (timeout, not found, bad arguments, sizes that disagree), versioned
 * structs of an older size, and membership: rank 2 dies without leaving and
 * the others' callbacks and failed_ranks() say so. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hoplite/hoplite.h"

static int g_rank = -1;

#define CHECK(cond)                                                                                      \
  do {                                                                                                   \
    if (!(cond)) {                                                                                       \
      fprintf(stderr, "rank %d: %s:%d: CHECK(%s) failed (last error: %s)\n", g_rank, __FILE__, __LINE__, \
              #cond, hoplite_last_error());                                                              \
      exit(1);                                                                                           \
    }                                                                                                    \
  } while (0)
#define CHECK_OK(call) CHECK((call) == HOPLITE_OK)

static hoplite_object_id_t named(const char* what, int rank) {
  char name[128];
  snprintf(name, sizeof name, "capi/%s/%d", what, rank);
  return hoplite_object_id_from_name(name);
}

/* Element i of rank r's reduce input: small, so sums and products of three
 * are exact in every type. */
static int64_t value(int rank, uint64_t i) {
  return (int64_t)((rank + i) % 5) + 1;
}

/* 16-bit floats of small integers (exact: at most 125 here). */
static uint16_t bf16_of(int64_t v) {
  float f = (float)v;
  uint32_t u;
  memcpy(&u, &f, 4);
  return (uint16_t)(u >> 16);
}
static int64_t of_bf16(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, 4);
  return (int64_t)f;
}
static uint16_t f16_of(int64_t v) {
  int e = 0;
  while ((v >> (e + 1)) != 0) ++e; /* v in [2^e, 2^(e+1)) */
  const uint16_t mant = (uint16_t)(((v - ((int64_t)1 << e)) << 10) >> e);
  return (uint16_t)(((e + 15) << 10) | mant);
}
static int64_t of_f16(uint16_t h) {
  const int e = (h >> 10) & 0x1f;
  const int64_t mant = (h & 0x3ff) | 0x400;
  return e >= 25 ? mant << (e - 25) : mant >> (25 - e);
}

static void fill(void* p, hoplite_dtype_t t, uint64_t count, int rank) {
  for (uint64_t i = 0; i < count; ++i) {
    int64_t v = value(rank, i);
    switch (t) {
      case HOPLITE_FLOAT32: ((float*)p)[i] = (float)v; break;
      case HOPLITE_FLOAT64: ((double*)p)[i] = (double)v; break;
      case HOPLITE_INT32: ((int32_t*)p)[i] = (int32_t)v; break;
      case HOPLITE_INT64: ((int64_t*)p)[i] = v; break;
      case HOPLITE_BFLOAT16: ((uint16_t*)p)[i] = bf16_of(v); break;
      case HOPLITE_FLOAT16: ((uint16_t*)p)[i] = f16_of(v); break;
    }
  }
}

static int64_t combine(hoplite_reduce_op_t op, int64_t a, int64_t b) {
  switch (op) {
    case HOPLITE_OP_SUM: return a + b;
    case HOPLITE_OP_PROD: return a * b;
    case HOPLITE_OP_MIN: return a < b ? a : b;
    case HOPLITE_OP_MAX: return a > b ? a : b;
  }
  return 0;
}

static int64_t element(const void* p, hoplite_dtype_t t, uint64_t i) {
  switch (t) {
    case HOPLITE_FLOAT32: return (int64_t)((const float*)p)[i];
    case HOPLITE_FLOAT64: return (int64_t)((const double*)p)[i];
    case HOPLITE_INT32: return ((const int32_t*)p)[i];
    case HOPLITE_INT64: return ((const int64_t*)p)[i];
    case HOPLITE_BFLOAT16: return of_bf16(((const uint16_t*)p)[i]);
    case HOPLITE_FLOAT16: return of_f16(((const uint16_t*)p)[i]);
  }
  return 0;
}

static size_t dtype_size(hoplite_dtype_t t) {
  if (t == HOPLITE_BFLOAT16 || t == HOPLITE_FLOAT16) return 2;
  return t == HOPLITE_FLOAT32 || t == HOPLITE_INT32 ? 4 : 8;
}

/* Membership events seen by the callback. */
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
static int g_failed_rank = -1;
static char g_reason[256];

static void on_change(const hoplite_membership_event_t* e, void* user) {
  CHECK(user == (void*)&g_failed_rank);
  pthread_mutex_lock(&g_mu);
  if (!e->alive) {
    g_failed_rank = e->rank;
    snprintf(g_reason, sizeof g_reason, "%s", e->reason);
  }
  pthread_cond_broadcast(&g_cv);
  pthread_mutex_unlock(&g_mu);
}

static void test_objects(hoplite_node_t* node, int rank, int n) {
  enum { kSize = 3 << 20 };
  unsigned char* buf = malloc(kSize);
  CHECK(buf != NULL);
  for (int i = 0; i < kSize; ++i) buf[i] = (unsigned char)(i * 7 + rank);
  CHECK_OK(hoplite_put(node, named("put", rank), buf, kSize));
  CHECK(hoplite_contains(node, named("put", rank)) == 1);
  CHECK_OK(hoplite_barrier(node, 20000));

  /* Every other rank's object, two ways: a blocking get and a future. */
  for (int r = 0; r < n; ++r) {
    hoplite_future_t* f = NULL;
    hoplite_view_t* v = NULL;
    CHECK_OK(hoplite_get_async(node, named("put", r), 0, &f));
    CHECK_OK(hoplite_future_wait(f, 20000, &v));
    CHECK(hoplite_future_ready(f) == 1);
    hoplite_future_release(f);
    CHECK(hoplite_view_size(v) == kSize);
    const unsigned char* d = hoplite_view_data(v);
    for (int i = 0; i < kSize; i += 4093) CHECK(d[i] == (unsigned char)(i * 7 + r));
    hoplite_view_release(v);
    CHECK_OK(hoplite_get(node, named("put", r), 20000, HOPLITE_GET_MUST_EXIST, &v));
    CHECK(hoplite_view_size(v) == kSize);
    hoplite_view_release(v);
  }

  /* A streaming put read while it is written. */
  if (rank == 0) {
    hoplite_writer_t* w = NULL;
    CHECK_OK(hoplite_create(node, named("stream", 0), kSize, &w));
    CHECK(hoplite_writer_size(w) == kSize);
    unsigned char* d = hoplite_writer_data(w);
    memcpy(d, buf, kSize / 2);
    CHECK_OK(hoplite_writer_publish(w, kSize / 2));
    CHECK_OK(hoplite_barrier(node, 20000)); /* the readers have started */
    memcpy(d + kSize / 2, buf + kSize / 2, kSize - kSize / 2);
    CHECK_OK(hoplite_writer_seal(w));
    hoplite_writer_destroy(w);
  } else {
    hoplite_future_t* f = NULL;
    CHECK_OK(hoplite_get_async(node, named("stream", 0), 0, &f));
    CHECK_OK(hoplite_barrier(node, 20000));
    hoplite_view_t* v = NULL;
    CHECK_OK(hoplite_future_wait(f, 20000, &v));
    hoplite_future_release(f);
    CHECK(hoplite_view_size(v) == kSize);
    const unsigned char* d = hoplite_view_data(v);
    for (int i = 0; i < kSize; i += 4093) CHECK(d[i] == (unsigned char)(i * 7));
    hoplite_view_release(v);
  }

  /* An aborted writer leaves nothing behind. */
  {
    hoplite_writer_t* w = NULL;
    CHECK_OK(hoplite_create(node, named("aborted", rank), 1024, &w));
    hoplite_writer_destroy(w);
    CHECK(hoplite_contains(node, named("aborted", rank)) == 0);
  }

  /* Errors: a get that times out, a must-exist get of nothing, an object
   * that exists here already. */
  {
    hoplite_view_t* v = NULL;
    CHECK(hoplite_get(node, named("never", rank), 200, 0, &v) == HOPLITE_ERR_TIMEOUT);
    CHECK(v == NULL);
    CHECK(strstr(hoplite_last_error(), "timeout") != NULL);
    CHECK(hoplite_get(node, named("nothing", rank), 5000, HOPLITE_GET_MUST_EXIST, &v) ==
          HOPLITE_ERR_NOT_FOUND);
    CHECK(hoplite_put(node, named("put", rank), buf, 16) == HOPLITE_ERR_ALREADY_EXISTS);
    CHECK(strcmp(hoplite_status_name(HOPLITE_ERR_PEER_FAILURE), "peer failure") == 0);
  }

  CHECK_OK(hoplite_barrier(node, 20000));
  CHECK_OK(hoplite_remove(node, named("put", rank), HOPLITE_REMOVE_GLOBAL));
  if (rank == 0) CHECK_OK(hoplite_remove(node, named("stream", 0), HOPLITE_REMOVE_GLOBAL));
  CHECK_OK(hoplite_barrier(node, 20000));
  for (int r = 0; r < n; ++r) {
    hoplite_view_t* v = NULL;
    CHECK(hoplite_get(node, named("put", r), 5000, HOPLITE_GET_MUST_EXIST, &v) == HOPLITE_ERR_NOT_FOUND);
    CHECK(hoplite_contains(node, named("put", r)) == 0);
  }
  CHECK(hoplite_remove(node, named("put", rank), 7) == HOPLITE_ERR_INVALID_ARGUMENT);
  free(buf);
}

static void test_reduce(hoplite_node_t* node, int rank, int n) {
  enum { kCount = 1 << 18 }; /* 2 MiB of int64 */
  int64_t* in = malloc(kCount * sizeof *in);
  CHECK(in != NULL);
  fill(in, HOPLITE_INT64, kCount, rank);
  CHECK_OK(hoplite_put(node, named("rin", rank), in, kCount * sizeof *in));
  CHECK_OK(hoplite_barrier(node, 20000));
  if (rank == 0) {
    hoplite_object_id_t inputs[3];
    for (int r = 0; r < n; ++r) inputs[r] = named("rin", r);
    hoplite_reduce_options_t o;
    hoplite_reduce_options_init(&o);
    o.inputs = inputs;
    o.num_inputs = (size_t)n;
    o.target = named("rout", 0);
    o.dtype = HOPLITE_INT64;
    o.op = HOPLITE_OP_SUM;
    o.k = 2;
    hoplite_object_id_t used[3];
    hoplite_reduce_result_t res;
    memset(&res, 0, sizeof res);
    res.struct_size = sizeof res;
    res.used = used;
    res.used_capacity = 3;
    CHECK_OK(hoplite_reduce(node, &o, &res));
    CHECK(res.num_used == 2);
    int ranks[2];
    for (int u = 0; u < 2; ++u) {
      ranks[u] = -1;
      for (int r = 0; r < n; ++r)
        if (memcmp(used[u].bytes, inputs[r].bytes, HOPLITE_OBJECT_ID_SIZE) == 0) ranks[u] = r;
      CHECK(ranks[u] >= 0);
    }
    CHECK(ranks[0] != ranks[1]);
    hoplite_view_t* v = NULL;
    CHECK_OK(hoplite_get(node, named("rout", 0), 20000, 0, &v));
    CHECK(hoplite_view_size(v) == kCount * sizeof(int64_t));
    const int64_t* out = hoplite_view_data(v);
    for (uint64_t i = 0; i < kCount; ++i) CHECK(out[i] == value(ranks[0], i) + value(ranks[1], i));
    hoplite_view_release(v);
    CHECK_OK(hoplite_remove(node, named("rout", 0), HOPLITE_REMOVE_GLOBAL));

    /* Bad arguments: an unknown op; inputs of different sizes. */
    o.op = (hoplite_reduce_op_t)9;
    CHECK(hoplite_reduce(node, &o, NULL) == HOPLITE_ERR_INVALID_ARGUMENT);
    o.op = HOPLITE_OP_SUM;
    CHECK_OK(hoplite_put(node, named("rin-short", 0), in, 64));
    inputs[1] = named("rin-short", 0);
    o.k = 0;
    o.timeout_ms = 20000;
    CHECK(hoplite_reduce(node, &o, NULL) == HOPLITE_ERR_INVALID_ARGUMENT);
    CHECK(strstr(hoplite_last_error(), "differ in size") != NULL);
    CHECK_OK(hoplite_remove(node, named("rin-short", 0), HOPLITE_REMOVE_GLOBAL));
  }
  CHECK_OK(hoplite_barrier(node, 30000));
  CHECK_OK(hoplite_remove(node, named("rin", rank), HOPLITE_REMOVE_GLOBAL));
  free(in);

  /* Every op and dtype through the allreduce helper, small (folded at
   * rank 0) and large (a tree-chain or stripes). */
  const uint64_t counts[2] = {1000, 1 << 20};
  for (int c = 0; c < 2; ++c) {
    for (int t = HOPLITE_FLOAT32; t <= HOPLITE_FLOAT16; ++t) {
      for (int op = HOPLITE_OP_SUM; op <= HOPLITE_OP_MAX; ++op) {
        const uint64_t count = counts[c];
        void* send = malloc(count * dtype_size((hoplite_dtype_t)t));
        void* recv = malloc(count * dtype_size((hoplite_dtype_t)t));
        CHECK(send && recv);
        fill(send, (hoplite_dtype_t)t, count, rank);
        CHECK_OK(
            hoplite_allreduce(node, send, recv, count, (hoplite_dtype_t)t, (hoplite_reduce_op_t)op, 60000));
        for (uint64_t i = 0; i < count; ++i) {
          int64_t want = value(0, i);
          for (int r = 1; r < n; ++r) want = combine((hoplite_reduce_op_t)op, want, value(r, i));
          if (element(recv, (hoplite_dtype_t)t, i) != want) {
            fprintf(stderr, "rank %d: allreduce dtype %d op %d count %llu: element %llu is %lld, not %lld\n",
                    rank, t, op, (unsigned long long)count, (unsigned long long)i,
                    (long long)element(recv, (hoplite_dtype_t)t, i), (long long)want);
            exit(1);
          }
        }
        free(send);
        free(recv);
      }
    }
  }
  /* In place, as MPI_IN_PLACE. */
  {
    float x[256];
    fill(x, HOPLITE_FLOAT32, 256, rank);
    CHECK_OK(hoplite_allreduce(node, x, x, 256, HOPLITE_FLOAT32, HOPLITE_OP_SUM, 20000));
    for (int i = 0; i < 256; ++i) CHECK((int64_t)x[i] == value(0, i) + value(1, i) + value(2, i));
  }
  CHECK(hoplite_allreduce(node, NULL, NULL, 4, HOPLITE_FLOAT32, HOPLITE_OP_SUM, 1000) ==
        HOPLITE_ERR_INVALID_ARGUMENT);
  CHECK(hoplite_allreduce(node, "", "", 0, (hoplite_dtype_t)7, HOPLITE_OP_SUM, 1000) ==
        HOPLITE_ERR_INVALID_ARGUMENT);
}

static void test_collectives(hoplite_node_t* node, int rank, int n) {
  enum { kBytes = 1 << 20 };
  unsigned char* buf = malloc(kBytes);
  unsigned char* all = malloc((size_t)kBytes * (size_t)n);
  CHECK(buf && all);

  /* broadcast from rank 1 */
  for (int i = 0; i < kBytes; ++i) buf[i] = rank == 1 ? (unsigned char)(i * 13) : 0;
  CHECK_OK(hoplite_broadcast(node, buf, kBytes, 1, 30000));
  for (int i = 0; i < kBytes; i += 997) CHECK(buf[i] == (unsigned char)(i * 13));

  /* gather to rank 2, then allgather */
  for (int i = 0; i < kBytes; ++i) buf[i] = (unsigned char)(i + 31 * rank);
  memset(all, 0, (size_t)kBytes * (size_t)n);
  CHECK_OK(hoplite_gather(node, buf, kBytes, rank == 2 ? all : NULL, 2, 30000));
  if (rank == 2) {
    for (int r = 0; r < n; ++r)
      for (int i = 0; i < kBytes; i += 991)
        CHECK(all[(size_t)r * kBytes + (size_t)i] == (unsigned char)(i + 31 * r));
  }
  memset(all, 0, (size_t)kBytes * (size_t)n);
  CHECK_OK(hoplite_allgather(node, buf, kBytes, all, 30000));
  for (int r = 0; r < n; ++r)
    for (int i = 0; i < kBytes; i += 991)
      CHECK(all[(size_t)r * kBytes + (size_t)i] == (unsigned char)(i + 31 * r));

  /* scatter from rank 0, then alltoallv: rank r sends d + 1 bytes to rank d */
  {
    unsigned char whole[3 * 16], part[16];
    for (int i = 0; i < 3 * 16; ++i) whole[i] = (unsigned char)(100 + i);
    CHECK_OK(hoplite_scatter(node, rank == 0 ? whole : NULL, part, 16, 0, 20000));
    for (int i = 0; i < 16; ++i) CHECK(part[i] == (unsigned char)(100 + 16 * rank + i));
    uint64_t send_counts[3], recv_counts[3];
    unsigned char send[1 + 2 + 3], recv[3 * 3];
    uint64_t at = 0;
    for (int d = 0; d < n; ++d) {
      send_counts[d] = (uint64_t)d + 1;
      recv_counts[d] = (uint64_t)rank + 1;
      for (int i = 0; i <= d; ++i) send[at++] = (unsigned char)(10 * rank + d);
    }
    CHECK_OK(hoplite_alltoallv(node, send, send_counts, recv, recv_counts, 20000));
    for (int s = 0; s < n; ++s)
      for (int i = 0; i <= rank; ++i) CHECK(recv[s * (rank + 1) + i] == (unsigned char)(10 * s + rank));
    recv_counts[0] += 1; /* disagrees with what rank 0 sends, and with recv's size */
    CHECK(hoplite_alltoallv(node, send, send_counts, recv, recv_counts, 20000) ==
          HOPLITE_ERR_INVALID_ARGUMENT);
  }

  /* reduce_to rank 1 */
  {
    double in[512], out[512];
    fill(in, HOPLITE_FLOAT64, 512, rank);
    for (int i = 0; i < 512; ++i) out[i] = -1;
    CHECK_OK(
        hoplite_reduce_to(node, in, rank == 1 ? out : NULL, 512, HOPLITE_FLOAT64, HOPLITE_OP_MAX, 1, 20000));
    if (rank == 1) {
      for (int i = 0; i < 512; ++i) {
        int64_t want = value(0, (uint64_t)i);
        for (int r = 1; r < n; ++r) want = combine(HOPLITE_OP_MAX, want, value(r, (uint64_t)i));
        CHECK((int64_t)out[i] == want);
      }
    }
  }

  /* A broadcast whose sizes disagree fails on the ranks that see it. */
  {
    const uint64_t mine = rank == 0 ? 64 : 128;
    hoplite_status_t st = hoplite_broadcast(node, buf, mine, 0, 20000);
    if (rank == 0) {
      CHECK_OK(st);
    } else {
      CHECK(st == HOPLITE_ERR_INVALID_ARGUMENT);
      CHECK(strstr(hoplite_last_error(), "same size") != NULL);
    }
  }
  CHECK(hoplite_broadcast(node, buf, 16, 9, 1000) == HOPLITE_ERR_INVALID_ARGUMENT);
  free(buf);
  free(all);
}

static void test_versions_and_stats(hoplite_node_t* node) {
  CHECK(hoplite_version() >= HOPLITE_C_API_VERSION);
  CHECK(strlen(hoplite_version_string()) > 0);
  const hoplite_api_v1_t* api = hoplite_api_v1();
  CHECK(api->version == 1);
  CHECK(api->node_rank(node) == hoplite_node_rank(node));
  CHECK(api->status_name(HOPLITE_ERR_TIMEOUT) == hoplite_status_name(HOPLITE_ERR_TIMEOUT));

  hoplite_stats_t s;
  memset(&s, 0, sizeof s);
  s.struct_size = sizeof s;
  CHECK_OK(hoplite_node_stats(node, &s));
  CHECK(s.store_capacity > 0);
  CHECK(s.bytes_received > 0); /* the tests above fetched objects */

  /* A caller built against an older, shorter struct: nothing is written
   * past its size. */
  hoplite_stats_t old;
  memset(&old, 0xab, sizeof old);
  old.struct_size = (uint32_t)offsetof(hoplite_stats_t, bytes_received);
  CHECK_OK(hoplite_node_stats(node, &old));
  CHECK(old.struct_size == offsetof(hoplite_stats_t, bytes_received));
  CHECK(old.store_capacity == s.store_capacity);
  CHECK(old.bytes_received == 0xababababababababULL);

  char hex[41];
  hoplite_object_id_hex(hoplite_object_id_from_name("x"), hex);
  CHECK(strlen(hex) == 40);
  hoplite_object_id_t a = hoplite_object_id_random(), b = hoplite_object_id_random();
  CHECK(memcmp(a.bytes, b.bytes, HOPLITE_OBJECT_ID_SIZE) != 0);
  CHECK(hoplite_put(NULL, a, "", 0) == HOPLITE_ERR_INVALID_ARGUMENT);
  CHECK(strstr(hoplite_last_error(), "node is NULL") != NULL);
}

static void test_membership(hoplite_node_t* node, int rank) {
  CHECK_OK(hoplite_on_membership_change(node, on_change, &g_failed_rank));
  CHECK(hoplite_failed_ranks(node, NULL, 0) == 0);
  const uint64_t epoch = hoplite_membership_epoch(node);
  CHECK_OK(hoplite_barrier(node, 20000));
  if (rank == 2) {
    /* A crash: no goodbye, no destroy. */
    fflush(stdout);
    _exit(0);
  }
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += 10;
  pthread_mutex_lock(&g_mu);
  while (g_failed_rank < 0) {
    if (pthread_cond_timedwait(&g_cv, &g_mu, &until) != 0) break;
  }
  const int failed = g_failed_rank;
  char reason[sizeof g_reason];
  memcpy(reason, g_reason, sizeof reason); /* later events may rewrite it */
  pthread_mutex_unlock(&g_mu);
  CHECK(failed == 2);
  int ranks[4] = {-1, -1, -1, -1};
  CHECK(hoplite_failed_ranks(node, ranks, 4) == 1);
  CHECK(ranks[0] == 2);
  CHECK(hoplite_membership_epoch(node) > epoch);
  /* The survivors still work together. */
  CHECK_OK(hoplite_barrier(node, 20000));
  printf("rank %d: rank 2 failed (%s); the survivors carry on\n", rank, reason);
}

int main(void) {
  hoplite_node_t* node = NULL;
  CHECK(hoplite_node_create(NULL, &node) == HOPLITE_ERR_INVALID_ARGUMENT);
  CHECK_OK(hoplite_node_create_from_env(&node));
  const int rank = hoplite_node_rank(node), n = hoplite_node_world_size(node);
  g_rank = rank;
  CHECK(n == 3);
  test_objects(node, rank, n);
  test_reduce(node, rank, n);
  test_collectives(node, rank, n);
  test_versions_and_stats(node);
  test_membership(node, rank);
  hoplite_node_destroy(node);
  printf("rank %d: C API test passed\n", rank);
  return 0;
}
