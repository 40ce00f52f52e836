/* A real TFLite external delegate that claims no nodes: the smallest library that exercises the external
 * delegate path end to end (dlopen, tflite_plugin_create_delegate with options, Prepare, destroy). The struct
 * is TfLiteDelegate's stable C layout from tensorflow/lite/core/c/common.h. It records the options it was
 * given in the environment variable NULL_DELEGATE_OPTIONS. Options: fail (refuse to load), static_only. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct TfLiteDelegate {
  void* data_;
  int (*Prepare)(void* context, struct TfLiteDelegate* delegate);
  int (*CopyFromBufferHandle)(void* context, struct TfLiteDelegate* delegate, int handle, void* tensor);
  int (*CopyToBufferHandle)(void* context, struct TfLiteDelegate* delegate, int handle, void* tensor);
  void (*FreeBufferHandle)(void* context, struct TfLiteDelegate* delegate, int* handle);
  int64_t flags;
  void* opaque_delegate_builder;
} TfLiteDelegate;

static int prepare(void* context, TfLiteDelegate* delegate) { (void)context; (void)delegate; return 0; }

TfLiteDelegate* tflite_plugin_create_delegate(char** keys, char** values, size_t count,
                                              void (*report_error)(const char*)) {
  char seen[512] = "";
  int static_only = 0;
  for (size_t i = 0; i < count; ++i) {
    if (strcmp(keys[i], "static_only") == 0) static_only = 1;
    if (strcmp(keys[i], "fail") == 0) {
      if (report_error) report_error("null delegate: told to fail by its options");
      return NULL;
    }
    strncat(seen, keys[i], sizeof(seen) - strlen(seen) - 1);
    strncat(seen, "=", sizeof(seen) - strlen(seen) - 1);
    strncat(seen, values[i], sizeof(seen) - strlen(seen) - 1);
    strncat(seen, ";", sizeof(seen) - strlen(seen) - 1);
  }
  setenv("NULL_DELEGATE_OPTIONS", seen, 1);
  TfLiteDelegate* delegate = calloc(1, sizeof(TfLiteDelegate));
  delegate->Prepare = prepare;
  /* kTfLiteDelegateFlagsAllowDynamicTensors (it claims nothing, so nothing is at stake), unless told to behave
   * like the many delegates that refuse graphs with dynamic-sized tensors */
  delegate->flags = static_only ? 0 : 1;
  return delegate;
}

void tflite_plugin_destroy_delegate(TfLiteDelegate* delegate) { free(delegate); }
