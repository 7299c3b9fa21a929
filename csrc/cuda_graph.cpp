// C ABI over libtorch's at::cuda::CUDAGraph for univla_ros (tch has no CUDA graph API).
// Built by build.rs only with the `cuda-graphs` feature; src/model/cuda_graph.rs wraps it.
// Only functions exported by libtorch_cuda / libc10_cuda are called (no CUDA runtime symbol of
// our own), so the object links against libtorch alone.
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAStream.h>

#include <exception>
#include <optional>
#include <string>

namespace {

thread_local std::string last_error;

// One graph, the side stream it is captured on, and the stream that was current before.
struct Graph {
    explicit Graph(c10::DeviceIndex device)
        : device(device), side(c10::cuda::getStreamFromPool(false, device)) {}
    c10::DeviceIndex device;
    c10::cuda::CUDAStream side;
    std::optional<c10::cuda::CUDAStream> previous;
    at::cuda::CUDAGraph graph;
};

template <class F>
int guarded(F&& f) {
    try {
        f();
        return 0;
    } catch (const std::exception& e) {
        last_error = e.what();
    } catch (...) {
        last_error = "unknown C++ exception";
    }
    return 1;
}

Graph* as_graph(void* g) { return static_cast<Graph*>(g); }

}  // namespace

extern "C" {

const char* univla_graph_last_error() { return last_error.c_str(); }

int univla_graph_new(int device, void** out) {
    return guarded([&] { *out = new Graph(static_cast<c10::DeviceIndex>(device)); });
}

// Makes the side stream current; the device is synchronised first, so that the side stream sees
// every earlier write of the previous stream (a one-off cost at capture time).
int univla_graph_enter_side_stream(void* g) {
    return guarded([&] {
        Graph* graph = as_graph(g);
        graph->previous = c10::cuda::getCurrentCUDAStream(graph->device);
        c10::cuda::device_synchronize();
        c10::cuda::setCurrentCUDAStream(graph->side);
    });
}

int univla_graph_leave_side_stream(void* g) {
    return guarded([&] {
        Graph* graph = as_graph(g);
        c10::cuda::device_synchronize();
        if (graph->previous) {
            c10::cuda::setCurrentCUDAStream(*graph->previous);
            graph->previous.reset();
        }
    });
}

int univla_graph_capture_begin(void* g) {
    return guarded([&] { as_graph(g)->graph.capture_begin(); });
}

int univla_graph_capture_end(void* g) {
    return guarded([&] { as_graph(g)->graph.capture_end(); });
}

int univla_graph_replay(void* g) {
    return guarded([&] { as_graph(g)->graph.replay(); });
}

void univla_graph_free(void* g) { delete as_graph(g); }

}  // extern "C"
