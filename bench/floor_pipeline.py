"""The pipeline's floor: coloi's steps written as plainly as possible, for comparison.

decode (grey) -> L* -> resize to the model -> LiteRT inference -> upsample a*b* -> Lab -> BGR ->
encode. No plugins, no checks, no metadata, no atomic write. Run as its own process, like
`coloi run`, so that both include interpreter start and imports:

    python bench/floor_pipeline.py MODEL.tflite INPUT.jpg OUTPUT.jpg
"""

import sys

import cv2
import numpy as np
from ai_edge_litert.interpreter import Interpreter

model, source, target = sys.argv[1:4]
interpreter = Interpreter(model_path=model, num_threads=2)
interpreter.allocate_tensors()
size = interpreter.get_input_details()[0]["shape"][1]

grey = cv2.imread(source, cv2.IMREAD_GRAYSCALE)
ramp = np.repeat((np.arange(256, dtype=np.float32) / 255).reshape(1, -1, 1), 3, axis=2)
l_of_grey = cv2.cvtColor(ramp, cv2.COLOR_BGR2Lab)[0, :, 0]
small = l_of_grey[cv2.resize(grey, (size, size), interpolation=cv2.INTER_AREA)]
interpreter.set_tensor(interpreter.get_input_details()[0]["index"], small[None, :, :, None])
interpreter.invoke()
ab = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0]
height, width = grey.shape
ab8 = cv2.resize(np.clip(np.rint(ab + 128), 0, 255).astype(np.uint8), (width, height))
l8 = np.clip(np.rint(l_of_grey * 2.55), 0, 255).astype(np.uint8)[grey]
bgr = cv2.cvtColor(cv2.merge([l8, ab8[:, :, 0], ab8[:, :, 1]]), cv2.COLOR_Lab2BGR)
cv2.imwrite(target, bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])
