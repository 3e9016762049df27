// BuiltinModels — models that subcommands use by default, compiled into the binary so that
// they work wherever ttfc runs (not only from the repository's root). Each is the exact text of
// its file in examples/ (a test keeps them equal).

enum BuiltinModels {
  /// examples/ncf.ttir: NeuMF over dynamic embedding tables, the model of `ttfc ncf`.
  static let ncf = """
// NeuMF (neural collaborative filtering, He et al. 2017; the MLPerf NCF model, smaller): a
// generalized matrix factorization branch (the product of user and item vectors) beside an MLP
// branch over their concatenation, joined by one logistic output. Users and items are dynamic
// embedding tables: any i64 id, a row on first sight in training, the default row otherwise.
module @ncf {
  param @w1 : f32[64, 32] = glorot_uniform(seed: 5)
  param @b1 : f32[32] = zeros
  param @w2 : f32[32, 16] = glorot_uniform(seed: 6)
  param @b2 : f32[16] = zeros
  param @wo : f32[32, 1] = glorot_uniform(seed: 7)
  param @bo : f32[1] = zeros
  table @user_gmf : f32[16] = normal(mean: 0.0, std: 0.01, seed: 1)
  table @item_gmf : f32[16] = normal(mean: 0.0, std: 0.01, seed: 2)
  table @user_mlp : f32[32] = normal(mean: 0.0, std: 0.01, seed: 3)
  table @item_mlp : f32[32] = normal(mean: 0.0, std: 0.01, seed: 4)

  func @logits(%user: i64[B], %item: i64[B]) -> f32[B] {
    %ug = embedding_lookup @user_gmf, %user : f32[B, 16]
    %ig = embedding_lookup @item_gmf, %item : f32[B, 16]
    %gmf = mul %ug, %ig : f32[B, 16]
    %um = embedding_lookup @user_mlp, %user : f32[B, 32]
    %im = embedding_lookup @item_mlp, %item : f32[B, 32]
    %pair = concat %um, %im {axis = 1} : f32[B, 64]
    %h1 = matmul %pair, @w1 : f32[B, 32]
    %a1 = add %h1, @b1 : f32[B, 32]
    %r1 = relu %a1 : f32[B, 32]
    %h2 = matmul %r1, @w2 : f32[B, 16]
    %a2 = add %h2, @b2 : f32[B, 16]
    %r2 = relu %a2 : f32[B, 16]
    %joined = concat %gmf, %r2 {axis = 1} : f32[B, 32]
    %o = matmul %joined, @wo : f32[B, 1]
    %ob = add %o, @bo : f32[B, 1]
    %z = reshape %ob : f32[B]
    return %z
  }

  func @predict(%user: i64[B], %item: i64[B]) -> f32[B] {
    %z = call @logits(%user, %item) : f32[B]
    %p = sigmoid %z : f32[B]
    return %p
  }

  func @loss(%user: i64[B], %item: i64[B], %label: f32[B]) -> f32[] {
    %z = call @logits(%user, %item) : f32[B]
    %l = sigmoid_cross_entropy %z, %label : f32[B]
    %m = reduce_mean %l : f32[]
    return %m
  }
}
"""
}
