/* hoplite.h: the C ABI of the Hoplite runtime (C99; usable from C and any FFI).
 *
 * Handles are opaque pointers, created and destroyed by this API. Every call
 * that can fail returns a hoplite_status_t; on failure, hoplite_last_error()
 * gives this thread's message for it ("timeout: get of 3f2a9c01: no complete
 * copy after 2000 ms"). Codes are grouped by what broke, as the C++ Status is.
 *
 * Versioning (the model is NCCL's versioned plugin tables):
 * - HOPLITE_C_API_VERSION is what this header describes; hoplite_version()
 *   is what the loaded library implements. A library serves every version up
 *   to its own, so a caller checks hoplite_version() >= the version it needs.
 * - Once released, the ABI only grows: functions are added, never changed;
 *   structs the caller fills start with struct_size and only gain fields at
 *   the end (the library gives fields beyond the caller's struct_size their
 *   defaults, and writes no output field beyond it).
 * - hoplite_api_v1() returns a table of every v1 function, for callers that
 *   load the library with dlopen and want one symbol.
 *
 * Threads: every function may be called from any thread; a node, view,
 * future or writer handle may be used by one thread at a time (a node by
 * many). Membership callbacks run on a thread of the node's, never inside a
 * call of the caller's.
 */
#ifndef HOPLITE_HOPLITE_H
#define HOPLITE_HOPLITE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HOPLITE_C_API_VERSION 1

#if defined(__GNUC__)
#define HOPLITE_EXPORT __attribute__((visibility("default")))
#else
#define HOPLITE_EXPORT
#endif

typedef enum hoplite_status {
  HOPLITE_OK = 0,
  HOPLITE_ERR_INVALID_ARGUMENT = 1, /* the caller passed something wrong */
  HOPLITE_ERR_NOT_FOUND = 2,        /* no such object or rank */
  HOPLITE_ERR_ALREADY_EXISTS = 3,   /* an object with this id exists here */
  HOPLITE_ERR_TIMEOUT = 4,          /* a wait ran out of time */
  HOPLITE_ERR_CAPACITY = 5,         /* the store (or a queue) is full */
  HOPLITE_ERR_PEER_FAILURE = 6,     /* a peer died or a link broke */
  HOPLITE_ERR_PROTOCOL = 7,         /* a peer broke the wire protocol */
  HOPLITE_ERR_CANCELLED = 8,        /* the node shut down first */
  HOPLITE_ERR_INTERNAL = 9          /* a bug, or an OS call that failed */
} hoplite_status_t;

typedef enum hoplite_reduce_op {
  HOPLITE_OP_SUM = 0,
  HOPLITE_OP_PROD = 1,
  HOPLITE_OP_MIN = 2,
  HOPLITE_OP_MAX = 3
} hoplite_reduce_op_t;

typedef enum hoplite_dtype {
  HOPLITE_FLOAT32 = 0,
  HOPLITE_FLOAT64 = 1,
  HOPLITE_INT32 = 2,
  HOPLITE_INT64 = 3,
  HOPLITE_BFLOAT16 = 4, /* folded in float, rounded to nearest even */
  HOPLITE_FLOAT16 = 5
} hoplite_dtype_t;

/* Objects are named by 20 bytes: a hash of a name (the same on every node)
 * or random. */
#define HOPLITE_OBJECT_ID_SIZE 20
typedef struct hoplite_object_id {
  uint8_t bytes[HOPLITE_OBJECT_ID_SIZE];
} hoplite_object_id_t;

typedef struct hoplite_node hoplite_node_t;
typedef struct hoplite_view hoplite_view_t;
typedef struct hoplite_future hoplite_future_t;
typedef struct hoplite_writer hoplite_writer_t;

/* ---- version and errors ---- */

/* The C API version the loaded library implements. */
HOPLITE_EXPORT uint32_t hoplite_version(void);
/* The library's release, "0.1.0". */
HOPLITE_EXPORT const char* hoplite_version_string(void);
/* This thread's message for the last failed call ("" if none). Valid until
 * this thread's next call into the library. */
HOPLITE_EXPORT const char* hoplite_last_error(void);
/* "timeout", "peer failure", ... */
HOPLITE_EXPORT const char* hoplite_status_name(hoplite_status_t status);

/* ---- object ids ---- */

HOPLITE_EXPORT hoplite_object_id_t hoplite_object_id_from_name(const char* name);
HOPLITE_EXPORT hoplite_object_id_t hoplite_object_id_random(void);
/* 40 hex digits and a NUL into out[41]. */
HOPLITE_EXPORT void hoplite_object_id_hex(hoplite_object_id_t id, char out[41]);

/* ---- nodes ---- */

typedef struct hoplite_node_options {
  uint32_t struct_size; /* sizeof(hoplite_node_options_t) */
  int32_t rank;
  int32_t world_size;
  const char* bootstrap_address; /* host:port of rank 0's control port */
  const char* listen_host;       /* NULL or "": the address routing to rank 0 */
  uint64_t store_capacity;       /* bytes */
  const char* transport;         /* "ucx", "tcp" or "auto" */
  const char* token;             /* the cluster's shared secret */
  int32_t insecure;              /* nonzero: run without a token (warned) */
  int32_t rejoin;                /* nonzero: rejoin a running cluster */
  uint32_t failure_timeout_ms;
  uint32_t bootstrap_timeout_ms;
} hoplite_node_options_t;

/* The defaults (NodeOptions'), struct_size set. Strings are NULL. */
HOPLITE_EXPORT void hoplite_node_options_init(hoplite_node_options_t* options);
/* Joins the cluster; returns once every member is known. */
HOPLITE_EXPORT hoplite_status_t hoplite_node_create(const hoplite_node_options_t* options,
                                                    hoplite_node_t** node);
/* From the launcher's environment: hoplite-run, torchrun, mpirun, srun
 * (docs/architecture.md lists the variables). */
HOPLITE_EXPORT hoplite_status_t hoplite_node_create_from_env(hoplite_node_t** node);
/* Leaves the cluster. Views, futures and writers of the node must be
 * released first. NULL is ignored. */
HOPLITE_EXPORT void hoplite_node_destroy(hoplite_node_t* node);
HOPLITE_EXPORT int hoplite_node_rank(const hoplite_node_t* node);
HOPLITE_EXPORT int hoplite_node_world_size(const hoplite_node_t* node);

/* ---- objects ---- */

/* Copies size bytes into the store and publishes the object; returns once
 * the directory knows it. */
HOPLITE_EXPORT hoplite_status_t hoplite_put(hoplite_node_t* node, hoplite_object_id_t id, const void* data,
                                            uint64_t size);

/* Streaming put: reserve size bytes, write them at hoplite_writer_data(),
 * declare written prefixes with publish (readers may pull them at once),
 * seal. Destroying an unsealed writer aborts the object. */
HOPLITE_EXPORT hoplite_status_t hoplite_create(hoplite_node_t* node, hoplite_object_id_t id, uint64_t size,
                                               hoplite_writer_t** writer);
HOPLITE_EXPORT void* hoplite_writer_data(hoplite_writer_t* writer);
HOPLITE_EXPORT uint64_t hoplite_writer_size(const hoplite_writer_t* writer);
HOPLITE_EXPORT hoplite_status_t hoplite_writer_publish(hoplite_writer_t* writer, uint64_t bytes);
HOPLITE_EXPORT hoplite_status_t hoplite_writer_seal(hoplite_writer_t* writer);
HOPLITE_EXPORT void hoplite_writer_destroy(hoplite_writer_t* writer);

/* Get flags. */
#define HOPLITE_GET_MUST_EXIST 1u /* NOT_FOUND at once if no copy is known */

/* The complete object, fetched if needed (waiting for a put if none exists
 * yet), as a pinned read-only view: its memory stays valid, and is not
 * reused, until the view is released. timeout_ms < 0: no limit. */
HOPLITE_EXPORT hoplite_status_t hoplite_get(hoplite_node_t* node, hoplite_object_id_t id, int64_t timeout_ms,
                                            uint32_t flags, hoplite_view_t** view);
HOPLITE_EXPORT const void* hoplite_view_data(const hoplite_view_t* view);
HOPLITE_EXPORT uint64_t hoplite_view_size(const hoplite_view_t* view);
HOPLITE_EXPORT void hoplite_view_release(hoplite_view_t* view);

/* The same without blocking: wait on the future (a timed-out wait leaves
 * the get running). */
HOPLITE_EXPORT hoplite_status_t hoplite_get_async(hoplite_node_t* node, hoplite_object_id_t id,
                                                  uint32_t flags, hoplite_future_t** future);
HOPLITE_EXPORT int hoplite_future_ready(const hoplite_future_t* future);
HOPLITE_EXPORT hoplite_status_t hoplite_future_wait(hoplite_future_t* future, int64_t timeout_ms,
                                                    hoplite_view_t** view);
HOPLITE_EXPORT void hoplite_future_release(hoplite_future_t* future);

#define HOPLITE_REMOVE_LOCAL 0  /* this node's copy */
#define HOPLITE_REMOVE_GLOBAL 1 /* every copy, and the directory's record */
HOPLITE_EXPORT hoplite_status_t hoplite_remove(hoplite_node_t* node, hoplite_object_id_t id, int scope);
/* 1 when a complete copy is here, else 0. */
HOPLITE_EXPORT int hoplite_contains(const hoplite_node_t* node, hoplite_object_id_t id);

/* ---- reduce ---- */

typedef struct hoplite_reduce_options {
  uint32_t struct_size; /* sizeof(hoplite_reduce_options_t) */
  const hoplite_object_id_t* inputs;
  size_t num_inputs;
  hoplite_object_id_t target;
  hoplite_reduce_op_t op;
  hoplite_dtype_t dtype;
  size_t k;              /* the first k inputs to become complete; 0: all */
  int64_t timeout_ms;    /* < 0: the default, 10 minutes */
  int32_t allow_stripes; /* nonzero for an allreduce (every holder reads it) */
} hoplite_reduce_options_t;

typedef struct hoplite_reduce_result {
  uint32_t struct_size; /* sizeof(hoplite_reduce_result_t) */
  /* In: where to write the inputs used, in arrival order (may be NULL). */
  hoplite_object_id_t* used;
  size_t used_capacity;
  /* Out: how many were used (may exceed used_capacity: then only the first
   * used_capacity are written), the tree depth, tasks recomputed and whole
   * restarts after failures, and whether it was striped. */
  size_t num_used;
  uint32_t depth;
  uint32_t recomputed;
  uint32_t restarts;
  int32_t striped;
} hoplite_reduce_result_t;

/* The defaults, struct_size set. */
HOPLITE_EXPORT void hoplite_reduce_options_init(hoplite_reduce_options_t* options);
/* Reduces into options->target and returns once it is complete on this
 * node. result may be NULL. */
HOPLITE_EXPORT hoplite_status_t hoplite_reduce(hoplite_node_t* node, const hoplite_reduce_options_t* options,
                                               hoplite_reduce_result_t* result);

/* ---- MPI-style collectives on buffers ----
 * Every rank makes the same calls in the same order; sizes must agree.
 * Each call puts its inputs as objects, runs the node's broadcast, reduce
 * or gather on them, copies the result out and removes its objects after a
 * closing barrier. count is in elements, bytes in bytes. timeout_ms < 0:
 * 10 minutes. */
HOPLITE_EXPORT hoplite_status_t hoplite_allreduce(hoplite_node_t* node, const void* send, void* recv,
                                                  uint64_t count, hoplite_dtype_t dtype,
                                                  hoplite_reduce_op_t op, int64_t timeout_ms);
HOPLITE_EXPORT hoplite_status_t hoplite_reduce_to(hoplite_node_t* node, const void* send, void* recv,
                                                  uint64_t count, hoplite_dtype_t dtype,
                                                  hoplite_reduce_op_t op, int root, int64_t timeout_ms);
HOPLITE_EXPORT hoplite_status_t hoplite_broadcast(hoplite_node_t* node, void* buf, uint64_t bytes, int root,
                                                  int64_t timeout_ms);
/* recv: world_size * bytes at root (ignored elsewhere), rank r's at r * bytes. */
HOPLITE_EXPORT hoplite_status_t hoplite_gather(hoplite_node_t* node, const void* send, uint64_t bytes,
                                               void* recv, int root, int64_t timeout_ms);
HOPLITE_EXPORT hoplite_status_t hoplite_allgather(hoplite_node_t* node, const void* send, uint64_t bytes,
                                                  void* recv, int64_t timeout_ms);
/* Root's send (world_size * bytes) cut in world_size parts: part r to rank
 * r's recv (bytes). send is ignored off the root. */
HOPLITE_EXPORT hoplite_status_t hoplite_scatter(hoplite_node_t* node, const void* send, void* recv,
                                                uint64_t bytes, int root, int64_t timeout_ms);
/* send holds world_size runs back to back, send_counts[d] bytes for rank d;
 * recv gets rank s's run for this rank as its s-th run (recv_counts[s]). */
HOPLITE_EXPORT hoplite_status_t hoplite_alltoallv(hoplite_node_t* node, const void* send,
                                                  const uint64_t* send_counts, void* recv,
                                                  const uint64_t* recv_counts, int64_t timeout_ms);
/* Every live member reaches it before anyone leaves. */
HOPLITE_EXPORT hoplite_status_t hoplite_barrier(hoplite_node_t* node, int64_t timeout_ms);

/* ---- membership and statistics ---- */

/* Ranks declared failed (and not rejoined): writes up to capacity of them,
 * returns how many there are. */
HOPLITE_EXPORT size_t hoplite_failed_ranks(const hoplite_node_t* node, int* ranks, size_t capacity);
HOPLITE_EXPORT uint64_t hoplite_membership_epoch(const hoplite_node_t* node);

typedef struct hoplite_membership_event {
  int32_t rank;
  int32_t alive; /* 0: declared failed; 1: rejoined */
  uint64_t epoch;
  const char* reason; /* valid during the callback */
} hoplite_membership_event_t;
typedef void (*hoplite_membership_fn)(const hoplite_membership_event_t* event, void* user);
/* Adds a callback for every later membership change, in order, on a thread
 * of the node's. It stays for the node's life. */
HOPLITE_EXPORT hoplite_status_t hoplite_on_membership_change(hoplite_node_t* node, hoplite_membership_fn fn,
                                                             void* user);

typedef struct hoplite_stats {
  uint32_t struct_size; /* sizeof(hoplite_stats_t) */
  uint64_t objects;
  uint64_t store_used;
  uint64_t store_capacity;
  uint64_t bytes_received;
  uint64_t bytes_served;
  uint64_t rejected_connections;
  uint64_t protocol_errors;
  uint64_t refused_messages;
  uint64_t reduce_tasks;
} hoplite_stats_t;
/* Fills stats up to stats->struct_size (set it first). */
HOPLITE_EXPORT hoplite_status_t hoplite_node_stats(const hoplite_node_t* node, hoplite_stats_t* stats);

/* ---- the v1 table ---- */

typedef struct hoplite_api_v1 {
  uint32_t version; /* 1 */
  uint32_t (*version_fn)(void);
  const char* (*version_string)(void);
  const char* (*last_error)(void);
  const char* (*status_name)(hoplite_status_t);
  hoplite_object_id_t (*object_id_from_name)(const char*);
  hoplite_object_id_t (*object_id_random)(void);
  void (*object_id_hex)(hoplite_object_id_t, char[41]);
  void (*node_options_init)(hoplite_node_options_t*);
  hoplite_status_t (*node_create)(const hoplite_node_options_t*, hoplite_node_t**);
  hoplite_status_t (*node_create_from_env)(hoplite_node_t**);
  void (*node_destroy)(hoplite_node_t*);
  int (*node_rank)(const hoplite_node_t*);
  int (*node_world_size)(const hoplite_node_t*);
  hoplite_status_t (*put)(hoplite_node_t*, hoplite_object_id_t, const void*, uint64_t);
  hoplite_status_t (*create)(hoplite_node_t*, hoplite_object_id_t, uint64_t, hoplite_writer_t**);
  void* (*writer_data)(hoplite_writer_t*);
  uint64_t (*writer_size)(const hoplite_writer_t*);
  hoplite_status_t (*writer_publish)(hoplite_writer_t*, uint64_t);
  hoplite_status_t (*writer_seal)(hoplite_writer_t*);
  void (*writer_destroy)(hoplite_writer_t*);
  hoplite_status_t (*get)(hoplite_node_t*, hoplite_object_id_t, int64_t, uint32_t, hoplite_view_t**);
  const void* (*view_data)(const hoplite_view_t*);
  uint64_t (*view_size)(const hoplite_view_t*);
  void (*view_release)(hoplite_view_t*);
  hoplite_status_t (*get_async)(hoplite_node_t*, hoplite_object_id_t, uint32_t, hoplite_future_t**);
  int (*future_ready)(const hoplite_future_t*);
  hoplite_status_t (*future_wait)(hoplite_future_t*, int64_t, hoplite_view_t**);
  void (*future_release)(hoplite_future_t*);
  hoplite_status_t (*remove)(hoplite_node_t*, hoplite_object_id_t, int);
  int (*contains)(const hoplite_node_t*, hoplite_object_id_t);
  void (*reduce_options_init)(hoplite_reduce_options_t*);
  hoplite_status_t (*reduce)(hoplite_node_t*, const hoplite_reduce_options_t*, hoplite_reduce_result_t*);
  hoplite_status_t (*allreduce)(hoplite_node_t*, const void*, void*, uint64_t, hoplite_dtype_t,
                                hoplite_reduce_op_t, int64_t);
  hoplite_status_t (*reduce_to)(hoplite_node_t*, const void*, void*, uint64_t, hoplite_dtype_t,
                                hoplite_reduce_op_t, int, int64_t);
  hoplite_status_t (*broadcast)(hoplite_node_t*, void*, uint64_t, int, int64_t);
  hoplite_status_t (*gather)(hoplite_node_t*, const void*, uint64_t, void*, int, int64_t);
  hoplite_status_t (*allgather)(hoplite_node_t*, const void*, uint64_t, void*, int64_t);
  hoplite_status_t (*barrier)(hoplite_node_t*, int64_t);
  size_t (*failed_ranks)(const hoplite_node_t*, int*, size_t);
  uint64_t (*membership_epoch)(const hoplite_node_t*);
  hoplite_status_t (*on_membership_change)(hoplite_node_t*, hoplite_membership_fn, void*);
  hoplite_status_t (*node_stats)(const hoplite_node_t*, hoplite_stats_t*);
  hoplite_status_t (*scatter)(hoplite_node_t*, const void*, void*, uint64_t, int, int64_t);
  hoplite_status_t (*alltoallv)(hoplite_node_t*, const void*, const uint64_t*, void*, const uint64_t*,
                                int64_t);
} hoplite_api_v1_t;

/* The v1 table (static; never freed). */
HOPLITE_EXPORT const hoplite_api_v1_t* hoplite_api_v1(void);

#ifdef __cplusplus
}
#endif

#endif /* HOPLITE_HOPLITE_H */
