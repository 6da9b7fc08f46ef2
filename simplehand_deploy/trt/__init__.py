"""TensorRT layer: engine builder, runner, content-keyed cache. Imports tensorrt only inside functions."""
