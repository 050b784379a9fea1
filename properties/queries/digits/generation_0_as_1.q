# Generation: a latent code z whose decoded "0" (GEN(z, 0): class input one-hot 0) NN1 classifies as a 1.
find z[1,4]
where z in [-1, 1],
      class(NN1(GEN(z, 0))) = 1
return GEN(z, 0), z
