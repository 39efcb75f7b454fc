import os

# A developer's own calibration file must not change test results.
os.environ["GPUPLAN_CALIBRATION"] = ""
