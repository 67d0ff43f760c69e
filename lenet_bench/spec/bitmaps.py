"""The fixed parameter vectors of LeNet-5's output RBF units: one stylized 7x12 bitmap per digit.

LeCun et al. (1998), section II.B: "the components of those parameters vectors were set to -1
or +1 ... they were instead designed to represent a stylized image of the corresponding
character class drawn on a 7x12 bitmap (hence the number 84)", shown in Fig. 3. The paper gives
the figure, not the values. These were drawn for lenet_bench after Fig. 3 (a bold font with
two-pixel strokes, the digits on the upper ten rows, the two lowest rows left for descenders as
in the figure's ASCII set): they are a deviation from the paper in their exact pixels.
'#' is +1 (ink), '.' is -1. Read row by row, left to right: the 84 components in order.
"""

from __future__ import annotations

import numpy as np

WIDTH, HEIGHT = 7, 12

DIGITS = {
    0: """
..###..
.##.##.
##...##
##...##
##...##
##...##
##...##
##...##
.##.##.
..###..
.......
.......""",
    1: """
...##..
..###..
.####..
...##..
...##..
...##..
...##..
...##..
...##..
.######
.......
.......""",
    2: """
.#####.
##...##
.....##
.....##
....##.
...##..
..##...
.##....
##.....
#######
.......
.......""",
    3: """
.#####.
##...##
.....##
.....##
..####.
.....##
.....##
.....##
##...##
.#####.
.......
.......""",
    4: """
....##.
...###.
..####.
.##.##.
##..##.
##..##.
#######
....##.
....##.
....##.
.......
.......""",
    5: """
#######
##.....
##.....
######.
.....##
.....##
.....##
.....##
##...##
.#####.
.......
.......""",
    6: """
..####.
.##....
##.....
##.....
######.
##...##
##...##
##...##
##...##
.#####.
.......
.......""",
    7: """
#######
.....##
.....##
....##.
...##..
...##..
..##...
..##...
..##...
..##...
.......
.......""",
    8: """
.#####.
##...##
##...##
##...##
.#####.
##...##
##...##
##...##
##...##
.#####.
.......
.......""",
    9: """
.#####.
##...##
##...##
##...##
##...##
.######
.....##
.....##
....##.
.####..
.......
.......""",
}


def digit_bitmaps() -> np.ndarray:
    """(10, 84) float32 array of +-1: row d is digit d's bitmap, read row by row."""
    rows = []
    for digit in range(10):
        lines = DIGITS[digit].strip().splitlines()
        if len(lines) != HEIGHT or any(len(line) != WIDTH for line in lines):
            raise ValueError(f"the bitmap of digit {digit} must be {WIDTH}x{HEIGHT}")
        rows.append([1.0 if c == "#" else -1.0 for c in "".join(lines)])
    return np.array(rows, dtype=np.float32)
