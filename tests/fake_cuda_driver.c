/* A stand-in for libcuda.so.1 for the tests of bitlogic.gpu's launch stack on machines without a GPU. It implements
 * the driver calls bitlogic makes with the driver's signatures and error codes; a "module image" is the path of a
 * library built by tests/cuda_emulator.py, and launching a function runs that library's emulate_<name>. Contexts are
 * per thread, as the driver's are, so a launch from a thread that never made the context current fails. */
#include <dlfcn.h>
#include <stdio.h>

typedef int CUresult;
enum {
    SUCCESS = 0,
    INVALID_VALUE = 1,
    NOT_INITIALIZED = 3,
    INVALID_DEVICE = 101,
    INVALID_IMAGE = 200,
    INVALID_CONTEXT = 201,
    NOT_FOUND = 500,
    LAUNCH_FAILED = 719,
};

static int initialized;
static int primary_context;
static __thread void* current;
static void* last_stream;
static unsigned launches;

CUresult cuInit(unsigned int flags) {
    if (flags != 0) return INVALID_VALUE;
    initialized = 1;
    return SUCCESS;
}

CUresult cuDeviceGet(int* device, int ordinal) {
    if (!initialized) return NOT_INITIALIZED;
    if (ordinal != 0) return INVALID_DEVICE;
    *device = 0;
    return SUCCESS;
}

CUresult cuDevicePrimaryCtxRetain(void** context, int device) {
    if (device != 0) return INVALID_DEVICE;
    *context = &primary_context;
    return SUCCESS;
}

CUresult cuCtxGetCurrent(void** context) {
    *context = current;
    return SUCCESS;
}

CUresult cuCtxSetCurrent(void* context) {
    current = context;
    return SUCCESS;
}

CUresult cuModuleLoadData(void** module, const void* image) {
    if (current != &primary_context) return INVALID_CONTEXT;
    void* handle = dlopen((const char*)image, RTLD_NOW | RTLD_LOCAL);
    if (!handle) return INVALID_IMAGE;
    *module = handle;
    return SUCCESS;
}

CUresult cuModuleGetFunction(void** function, void* module, const char* name) {
    char symbol[256];
    snprintf(symbol, sizeof symbol, "emulate_%s", name);
    void* found = dlsym(module, symbol);
    if (!found) return NOT_FOUND;
    *function = found;
    return SUCCESS;
}

CUresult cuLaunchKernel(void* function, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                        unsigned shared, void* stream, void** params, void** extra) {
    if (current != &primary_context) return INVALID_CONTEXT;
    if (shared != 0 || extra != 0 || gx == 0 || gy == 0 || gz == 0 || bx * by * bz == 0) return INVALID_VALUE;
    const unsigned dims[6] = {gx, gy, gz, bx, by, bz};
    last_stream = stream;
    ++launches;
    return ((int (*)(const unsigned*, void**))function)(dims, params) ? LAUNCH_FAILED : SUCCESS;
}

CUresult cuGetErrorString(CUresult error, const char** text) {
    switch (error) {
        case SUCCESS: *text = "no error"; return SUCCESS;
        case INVALID_VALUE: *text = "invalid argument"; return SUCCESS;
        case NOT_INITIALIZED: *text = "initialization error"; return SUCCESS;
        case INVALID_DEVICE: *text = "invalid device ordinal"; return SUCCESS;
        case INVALID_IMAGE: *text = "device kernel image is invalid"; return SUCCESS;
        case INVALID_CONTEXT: *text = "invalid device context"; return SUCCESS;
        case NOT_FOUND: *text = "named symbol not found"; return SUCCESS;
        case LAUNCH_FAILED: *text = "unspecified launch failure"; return SUCCESS;
        default: *text = 0; return INVALID_VALUE;
    }
}

/* For the tests: the stream of the last launch and the number of launches. */
void* fake_last_stream(void) { return last_stream; }
unsigned fake_launches(void) { return launches; }
/* A "kernel" that does nothing, for timing the launch path itself. */
int fake_noop(const unsigned* dims, void** params) { (void)dims; (void)params; return 0; }
