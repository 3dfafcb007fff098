"""Facts about the 68-point iBUG landmark scheme shared by every face module."""

import numpy as np

N_POINTS = 68

JAW = range(0, 17)
BROWS = range(17, 27)
NOSE = range(27, 36)
RIGHT_EYE = range(36, 42)  # the subject's right eye: on the left of the image
LEFT_EYE = range(42, 48)
LIPS = range(48, 68)

#: index of each point's mirror image (left <-> right), for flips and symmetric templates
MIRROR = np.array(
    [16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0]  # jaw
    + [26, 25, 24, 23, 22, 21, 20, 19, 18, 17]  # brows
    + [27, 28, 29, 30, 35, 34, 33, 32, 31]  # nose
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]  # eyes
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]  # outer lips
    + [64, 63, 62, 61, 60, 67, 66, 65]  # inner lips
)
