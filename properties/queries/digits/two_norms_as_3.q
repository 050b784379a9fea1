# Two norms: a test image of an 8 changed only in its top two rows, by little in L1 (< 0.8 summed over those 16
# pixels) yet by much at one pixel (L-infinity > 0.5), which NN1 classifies as a 3.  Constant: image_8.npy.
find i[8,8]
where i in [0, 1],
      i[2:, :] = image[2:, :],
      l1(i[:2, :] - image[:2, :]) < 0.8,
      linf(i[:2, :] - image[:2, :]) > 0.5,
      class(NN1(i)) = 3
return i
