# Generation: a latent code z whose decoded "1" (GEN(z, 1): class input one-hot 1) NN1 classifies as an 8.
find z[1,4]
where z in [-1, 1],
      class(NN1(GEN(z, 1))) = 8
return GEN(z, 1), z
