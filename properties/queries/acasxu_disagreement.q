# The question of acasxu_disagreement.vnnlib in the query language (ACAS Xu advises the *smallest* score):
# on the prop_1 region, does F (1_1) advise clear-of-conflict while G (1_9) advises something else?
#   nnverify query properties/queries/acasxu_disagreement.q \
#       --net F=networks/ACASXU_run2a_1_1_batch_2000.onnx --net G=networks/ACASXU_run2a_1_9_batch_2000.onnx
find i[1,1,1,5]
where i[0] in [0.6, 0.679857769], i[1] in [-0.5, 0.5], i[2] in [-0.5, 0.5], i[3] in [0.45, 0.5],
      i[4] in [-0.5, -0.45],
      F(i)[0] <= F(i)[1], F(i)[0] <= F(i)[2], F(i)[0] <= F(i)[3], F(i)[0] <= F(i)[4],
      G(i)[1] < G(i)[0] or G(i)[2] < G(i)[0] or G(i)[3] < G(i)[0] or G(i)[4] < G(i)[0]
return i, F(i), G(i)
