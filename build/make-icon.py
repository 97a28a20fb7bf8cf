#!/usr/bin/env python3
"""Writes build/icon.png (512x512 RGBA), the app icon electron-builder uses for every platform:
a rounded indigo square with a 3x3 grid of experts, two of them lit (a router's top-2). Standard library only."""
import math, struct, zlib, os

N = 512
def lerp(a, b, t): return tuple(int(round(x + (y - x) * t)) for x, y in zip(a, b))

def rounded_alpha(x, y, x0, y0, x1, y1, r):
    # coverage of pixel center in a rounded rect, with 1px antialiasing
    cx = min(max(x, x0 + r), x1 - r); cy = min(max(y, y0 + r), y1 - r)
    d = math.hypot(x - cx, y - cy) - r
    if x < x0 or x > x1 or y < y0 or y > y1: d = max(d, 1)
    return max(0.0, min(1.0, 0.5 - d))

top, bottom = (99, 102, 241), (49, 46, 129)
lit, dim = (253, 224, 71), (199, 210, 254)
cells = []
pad, gap = 112, 24
size = (N - 2 * pad - 2 * gap) / 3
for i in range(3):
    for j in range(3):
        x0 = pad + j * (size + gap); y0 = pad + i * (size + gap)
        cells.append((x0, y0, x0 + size, y0 + size, (i, j) in ((0, 2), (1, 1))))

rows = []
for y in range(N):
    row = bytearray([0])
    for x in range(N):
        px, py = x + 0.5, y + 0.5
        a = rounded_alpha(px, py, 16, 16, N - 16, N - 16, 96)
        col = lerp(top, bottom, py / N)
        for x0, y0, x1, y1, on in cells:
            c = rounded_alpha(px, py, x0, y0, x1, y1, 22)
            if c > 0:
                col = lerp(col, lit if on else dim, c * (1.0 if on else 0.55))
        row += bytes([*col, int(round(a * 255))])
    rows.append(bytes(row))

def chunk(t, d): return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", N, N, 8, 6, 0, 0, 0)) + \
      chunk(b"IDAT", zlib.compress(b"".join(rows), 9)) + chunk(b"IEND", b"")
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "icon.png")
open(out, "wb").write(png)
print(out, len(png), "bytes")
