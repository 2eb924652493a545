/**
 * The model's shape and its parameters: a Llama-style decoder (RMSNorm, RoPE, GQA attention,
 * SwiGLU MLP, untied or tied LM head). Parameter names and layouts are Hugging Face's
 * `LlamaForCausalLM` ones (Linear weights are [out, in]), so a checkpoint written here loads
 * into the PyTorch twin unchanged. Presets name the sizes the CLI, the tests and the GPU
 * experiments use.
 */
import { InvalidArgumentError } from 'magi-attention';

export interface LlamaConfig {
  readonly vocabSize: number;
  /** Width of the residual stream. */
  readonly dim: number;
  readonly nLayers: number;
  readonly nHeads: number;
  readonly nKvHeads: number;
  readonly headDim: number;
  /** Width of the SwiGLU hidden layer. */
  readonly ffnDim: number;
  readonly normEps: number;
  readonly ropeTheta: number;
  /** The LM head reuses the token embedding. */
  readonly tieEmbeddings: boolean;
  /** Weights are drawn from N(0, initStd²); norm weights start at 1. */
  readonly initStd: number;
}

export const PRESETS = {
  /** CI size: a few hundred thousand parameters, a training step in tens of milliseconds on one CPU core. */
  tiny: { vocabSize: 512, dim: 64, nLayers: 2, nHeads: 4, nKvHeads: 2, headDim: 16, ffnDim: 176, normEps: 1e-5, ropeTheta: 10000, tieEmbeddings: false, initStd: 0.02 },
  /** A few layers at head dim 128 for quick GPU checks. */
  'gpu-small': { vocabSize: 50304, dim: 1024, nLayers: 2, nHeads: 8, nKvHeads: 2, headDim: 128, ffnDim: 2816, normEps: 1e-5, ropeTheta: 10000, tieEmbeddings: false, initStd: 0.02 },
  /** The experiments' model: 8 layers, width 1024, 8:2 heads of 128; 193 M parameters, 90 M outside the embedding and LM head. */
  gpu: { vocabSize: 50304, dim: 1024, nLayers: 8, nHeads: 8, nKvHeads: 2, headDim: 128, ffnDim: 2816, normEps: 1e-5, ropeTheta: 10000, tieEmbeddings: false, initStd: 0.02 },
} as const satisfies Record<string, LlamaConfig>;

export type PresetName = keyof typeof PRESETS;
export const PRESET_NAMES = Object.keys(PRESETS) as PresetName[];

/** Checks every field; returns the config. */
export function checkConfig(c: LlamaConfig): LlamaConfig {
  for (const name of ['vocabSize', 'dim', 'nLayers', 'nHeads', 'nKvHeads', 'headDim', 'ffnDim'] as const) {
    if (!Number.isSafeInteger(c[name]) || c[name] < 1) throw new InvalidArgumentError(name, 'must be a positive integer', `got ${c[name]}`);
  }
  if (c.nHeads % c.nKvHeads !== 0) throw new InvalidArgumentError('nKvHeads', 'must divide nHeads (GQA groups)', `${c.nHeads} vs ${c.nKvHeads}`);
  if (c.headDim % 2 !== 0) throw new InvalidArgumentError('headDim', 'must be even (RoPE rotates pairs)', `got ${c.headDim}`);
  if (!(c.normEps > 0)) throw new InvalidArgumentError('normEps', 'must be > 0', `got ${c.normEps}`);
  if (!(c.ropeTheta > 1)) throw new InvalidArgumentError('ropeTheta', 'must be > 1', `got ${c.ropeTheta}`);
  if (!(c.initStd > 0)) throw new InvalidArgumentError('initStd', 'must be > 0', `got ${c.initStd}`);
  return c;
}

/** One parameter: its checkpoint name, shape, initial distribution and whether AdamW decays it. */
export interface ParamSpec {
  readonly name: string;
  readonly shape: readonly number[];
  readonly init: 'normal' | 'ones';
  /** Matrices are decayed; norm weights are not (the usual Llama recipe). */
  readonly decay: boolean;
}

export function layerParamName(layer: number, part: LayerPart): string {
  return `model.layers.${layer}.${LAYER_PARTS[part]}`;
}

const LAYER_PARTS = {
  attnNorm: 'input_layernorm.weight',
  wq: 'self_attn.q_proj.weight',
  wk: 'self_attn.k_proj.weight',
  wv: 'self_attn.v_proj.weight',
  wo: 'self_attn.o_proj.weight',
  mlpNorm: 'post_attention_layernorm.weight',
  wGate: 'mlp.gate_proj.weight',
  wUp: 'mlp.up_proj.weight',
  wDown: 'mlp.down_proj.weight',
} as const;
export type LayerPart = keyof typeof LAYER_PARTS;

export const EMBED = 'model.embed_tokens.weight';
export const FINAL_NORM = 'model.norm.weight';
export const LM_HEAD = 'lm_head.weight';

/** Every parameter of the model, in checkpoint order. */
export function paramSpecs(c: LlamaConfig): ParamSpec[] {
  const q = c.nHeads * c.headDim;
  const kv = c.nKvHeads * c.headDim;
  const specs: ParamSpec[] = [{ name: EMBED, shape: [c.vocabSize, c.dim], init: 'normal', decay: true }];
  for (let l = 0; l < c.nLayers; l++) {
    const shapes: Record<LayerPart, number[]> = {
      attnNorm: [c.dim],
      wq: [q, c.dim],
      wk: [kv, c.dim],
      wv: [kv, c.dim],
      wo: [c.dim, q],
      mlpNorm: [c.dim],
      wGate: [c.ffnDim, c.dim],
      wUp: [c.ffnDim, c.dim],
      wDown: [c.dim, c.ffnDim],
    };
    for (const part of Object.keys(LAYER_PARTS) as LayerPart[]) {
      const isNorm = part === 'attnNorm' || part === 'mlpNorm';
      specs.push({ name: layerParamName(l, part), shape: shapes[part], init: isNorm ? 'ones' : 'normal', decay: !isNorm });
    }
  }
  specs.push({ name: FINAL_NORM, shape: [c.dim], init: 'ones', decay: false });
  if (!c.tieEmbeddings) specs.push({ name: LM_HEAD, shape: [c.vocabSize, c.dim], init: 'normal', decay: true });
  return specs;
}

export function paramCount(c: LlamaConfig): number {
  return paramSpecs(c).reduce((n, s) => n + s.shape.reduce((a, b) => a * b, 1), 0);
}

/**
 * Model FLOPs of one training step over `tokens` tokens whose attention mask has `maskArea`
 * unmasked cells (the PaLM convention, no recomputation counted): 6 per matmul weight per token
 * (forward 2, backward 4), and attention 3 × 4·area·Hq·D per layer (QKᵀ and PV forward, twice
 * that backward). The embedding lookup is not a matmul and counts nothing.
 */
export function stepFlops(c: LlamaConfig, tokens: number, maskArea: number): { matmul: number; attention: number; total: number } {
  const q = c.nHeads * c.headDim;
  const kv = c.nKvHeads * c.headDim;
  const perLayer = c.dim * q * 2 + c.dim * kv * 2 + 3 * c.dim * c.ffnDim;
  const matmulWeights = c.nLayers * perLayer + c.vocabSize * c.dim;
  const matmul = 6 * matmulWeights * tokens;
  const attention = c.nLayers * 3 * 4 * maskArea * c.nHeads * c.headDim;
  return { matmul, attention, total: matmul + attention };
}

/** The Hugging Face `LlamaConfig` fields of this model (for the PyTorch twin). */
export function hfConfig(c: LlamaConfig, maxPositions: number): Record<string, unknown> {
  return {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    vocab_size: c.vocabSize,
    hidden_size: c.dim,
    intermediate_size: c.ffnDim,
    num_hidden_layers: c.nLayers,
    num_attention_heads: c.nHeads,
    num_key_value_heads: c.nKvHeads,
    head_dim: c.headDim,
    hidden_act: 'silu',
    max_position_embeddings: maxPositions,
    rms_norm_eps: c.normEps,
    rope_theta: c.ropeTheta,
    tie_word_embeddings: c.tieEmbeddings,
    attention_bias: false,
    mlp_bias: false,
    attention_dropout: 0,
    initializer_range: c.initStd,
  };
}
