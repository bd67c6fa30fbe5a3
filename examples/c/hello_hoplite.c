/* hello_hoplite: the C ABI in one page. Every rank puts an object and reads
 * its neighbour's, then the ranks allreduce a vector and rank 0 broadcasts
 * a greeting.
 *
 *   cc -std=c99 hello_hoplite.c $(pkg-config --cflags --libs hoplite) -o hello_hoplite
 *   hoplite-run -n 4 -- ./hello_hoplite
 */
#include <stdio.h>
#include <string.h>

#include "hoplite/hoplite.h"

#define TRY(call)                                                                              \
  do {                                                                                         \
    hoplite_status_t st_ = (call);                                                             \
    if (st_ != HOPLITE_OK) {                                                                   \
      fprintf(stderr, "%s: %s (%s)\n", #call, hoplite_last_error(), hoplite_status_name(st_)); \
      return 1;                                                                                \
    }                                                                                          \
  } while (0)

int main(void) {
  if (hoplite_version() < HOPLITE_C_API_VERSION) {
    fprintf(stderr, "libhoplite implements C API %u; this program needs %d\n", hoplite_version(),
            HOPLITE_C_API_VERSION);
    return 1;
  }
  hoplite_node_t* node = NULL;
  TRY(hoplite_node_create_from_env(&node));
  const int rank = hoplite_node_rank(node), n = hoplite_node_world_size(node);

  /* Objects: put mine, get my neighbour's (a future until it is put). */
  char name[64], text[64];
  snprintf(name, sizeof name, "hello/%d", rank);
  snprintf(text, sizeof text, "greetings from rank %d", rank);
  TRY(hoplite_put(node, hoplite_object_id_from_name(name), text, strlen(text) + 1));
  snprintf(name, sizeof name, "hello/%d", (rank + 1) % n);
  hoplite_view_t* view = NULL;
  TRY(hoplite_get(node, hoplite_object_id_from_name(name), 10000, 0, &view));
  printf("rank %d read \"%s\"\n", rank, (const char*)hoplite_view_data(view));
  hoplite_view_release(view);

  /* Collectives on buffers. */
  float v[4] = {1.0f * rank, 1, 2, 3};
  TRY(hoplite_allreduce(node, v, v, 4, HOPLITE_FLOAT32, HOPLITE_OP_SUM, -1));
  char greeting[32] = "";
  if (rank == 0) snprintf(greeting, sizeof greeting, "hello, %d ranks", n);
  TRY(hoplite_broadcast(node, greeting, sizeof greeting, 0, -1));
  printf("rank %d: allreduce gives {%g, %g, %g, %g}; rank 0 says \"%s\"\n", rank, v[0], v[1], v[2], v[3],
         greeting);

  TRY(hoplite_barrier(node, -1));
  snprintf(name, sizeof name, "hello/%d", rank);
  TRY(hoplite_remove(node, hoplite_object_id_from_name(name), HOPLITE_REMOVE_GLOBAL));
  hoplite_node_destroy(node);
  return 0;
}
