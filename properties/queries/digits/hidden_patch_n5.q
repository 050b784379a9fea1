# Hidden neuron and patch: near a test image of a 3 (L-infinity radius 0.1), with the top-left 2x2 patch
# unchanged, hidden neuron 5 of NN1's first layer (tensor l1) switched off and the class still 3.
# Constant: image = image_3.npy.
find i[8,8]
where i in [0, 1],
      linf(i - image) < 0.1,
      i[:2, :2] = image[:2, :2],
      NN1(i).l1[0, 5] = 0,
      class(NN1(i)) = 3
return i, NN1(i).l1
