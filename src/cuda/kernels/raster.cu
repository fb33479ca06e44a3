// The bird's-eye raster (src/video/raster.rs) on the GPU: one thread per pixel of each frame
// fills the pixel with the colour of the last polygon (in drawing order) that covers its centre.
// The CPU rasteriser scans rows and fills the pixel runs between sorted pairs of edge crossings
// u = x_crossing − 0.5, pixel x included when u_2k ≤ x ≤ u_2k+1 for some k. With L crossings
// u < x and E crossings u = x (a closed ring crosses a row an even number of times), that is
// "E > 0, or L odd" — the same pixels, from the same arithmetic.

DK_KERNEL void dk_raster(const DkRasterArgs a) {
  u32 i = DK_TID;
  u32 per = a.width * a.height;
  if (i >= per * a.frames) return;
  u32 f = i / per, p = i % per;
  u32 x = p % a.width, y = p / a.width;
  double xd = (double)x, xc = (double)x + 0.5, yc = (double)y + 0.5;
  u32 colour = a.background;
  for (int q = a.frame_poly[f]; q < a.frame_poly[f + 1]; q++) {
    const double* b = a.bbox + 4 * q;
    // A crossing needs one vertex above the row centre and one at or below it.
    if (yc < b[1] || yc >= b[3] || xc < b[0] - 1.0 || xc > b[2] + 1.0) continue;
    int s = a.poly_start[q], n = a.poly_start[q + 1] - s;
    const double* vx = a.vx + s;
    const double* vy = a.vy + s;
    int lt = 0, le = 0, j = n - 1;
    for (int k = 0; k < n; k++) {
      double ax = vx[k], ay = vy[k], bx = vx[j], by = vy[j];
      if ((ay > yc) != (by > yc)) {
        double u = (ax + (yc - ay) * (bx - ax) / (by - ay)) - 0.5;
        if (u < xd) lt++;
        if (u <= xd) le++;
      }
      j = k;
    }
    if (le > lt || (lt & 1)) colour = a.colour[q];
  }
  u8* o = a.out + 3ull * i;
  o[0] = (u8)(colour >> 16);
  o[1] = (u8)(colour >> 8);
  o[2] = (u8)colour;
}
