# Differencing: NN1 and NN2 disagree near a test image of a 3 (L-infinity radius 0.08), where NN1 is confident
# (softmax > 0.8) that it is a 3.  Constant: image = image_3.npy.
find i[8,8]
where i in [0, 1],
      linf(i - image) < 0.08,
      class(NN1(i)) = 3,
      NN1(i).p[3] > 0.8,
      class(NN2(i)) != 3
return i, NN1(i), NN2(i)
