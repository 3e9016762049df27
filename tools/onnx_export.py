#!/usr/bin/env python3
"""Real models through `ttfc import` (issue 21, point 3; W12's models). Optional, not in CI.

Run by tools/onnx_real (which makes the ignored .venv-torch with torch, torchvision and
transformers). Two steps, each its own command:

  .venv-torch/bin/python tools/onnx_export.py export [--out out/w12]
      torchvision's ResNet-18 (batch axis dynamic) and a transformers BERT encoder built from a
      BertConfig (batch 8, sequence 128, static), both with random initial weights (nothing is
      downloaded), to ONNX opset 17 with torch.onnx's TorchScript exporter; writes each model's
      inputs beside it (.npy) and a manifest.json.
  .venv/bin/python tools/onnx_export.py check --ttfc PATH [--out out/w12]
      `ttfc import` each model, `ttfc run` it (compiled) on the saved inputs and compare every
      output with onnxruntime's on the same inputs: the largest relative error (|ttfc - ort| over
      the output's largest magnitude, and per element where |ort| >= 1e-3 of that) must be under
      1e-4. Exit 1 otherwise.
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np

# W12's BERT encoder: BERT-mini's shape (L=4, H=256, A=4, I=1024) with BERT's vocabulary.
BERT = dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024,
            vocab_size=30522, max_position_embeddings=512)
BERT_BATCH, BERT_SEQ = 8, 128
RESNET_BATCHES = (1, 32)


def import_torchvision():
    """torchvision, whose models need none of its compiled ops. The torchvision wheel on PyPI is
    built for a CUDA torch; beside the CPU torch its _C extension does not load, and torchvision's
    __init__ then fails registering fake kernels for `torchvision::nms` and `qnms`, which only _C
    defines. Their schemas (no kernels: nothing here calls them) are defined first in that case."""
    import importlib
    import torch
    try:
        return importlib.import_module("torchvision")
    except RuntimeError as error:
        if "torchvision::nms" not in str(error):
            raise
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    library = torch.library.Library("torchvision", "DEF")
    library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    library.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    import_torchvision.library = library  # kept alive
    return importlib.import_module("torchvision")


def export(out):
    import torch
    torchvision = import_torchvision()
    import transformers
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    os.makedirs(out, exist_ok=True)
    manifest = {"torch": torch.__version__, "torchvision": torchvision.__version__,
                "transformers": transformers.__version__, "opset": 17, "models": {}}

    resnet = torchvision.models.resnet18(weights=None).eval()
    # Random running statistics too, so the exported (folded) batch norms are not the identity.
    with torch.no_grad():
        for m in resnet.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    path = os.path.join(out, "resnet18.onnx")
    torch.onnx.export(resnet, (torch.randn(1, 3, 224, 224),), path, input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17, dynamo=False)
    inputs = {}
    for b in RESNET_BATCHES:
        name = f"resnet18_image_b{b}.npy"
        image = np.random.default_rng(b).standard_normal((b, 3, 224, 224), dtype=np.float32)
        np.save(os.path.join(out, name), image)
        with torch.no_grad():  # PyTorch's own outputs, a second reference beside onnxruntime's
            np.save(os.path.join(out, f"resnet18_b{b}_torch0.npy"), resnet(torch.from_numpy(image)).numpy())
        inputs[f"b{b}"] = {"image": name}
    manifest["models"]["resnet18"] = {"onnx": "resnet18.onnx", "inputs": inputs}

    config = BertConfig(**BERT, hidden_act="gelu", attn_implementation="eager")
    bert = BertModel(config, add_pooling_layer=True).eval()
    rng = np.random.default_rng(8)
    ids = rng.integers(0, config.vocab_size, (BERT_BATCH, BERT_SEQ), dtype=np.int64)
    mask = np.ones((BERT_BATCH, BERT_SEQ), dtype=np.int64)
    for row in range(BERT_BATCH):  # padded rows of different lengths: the mask matters
        mask[row, BERT_SEQ - 9 * row:] = 0
    path = os.path.join(out, "bert.onnx")
    class Encoder(torch.nn.Module):  # BertModel's outputs as a tuple, its inputs by keyword
        def __init__(self, bert):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask):
            out = self.bert(input_ids=input_ids, attention_mask=attention_mask)
            return out.last_hidden_state, out.pooler_output

    torch.onnx.export(Encoder(bert).eval(), (torch.from_numpy(ids), torch.from_numpy(mask)), path,
                      input_names=["input_ids", "attention_mask"], output_names=["last_hidden_state", "pooler_output"],
                      opset_version=17, dynamo=False)
    with torch.no_grad():
        for k, value in enumerate(Encoder(bert).eval()(torch.from_numpy(ids), torch.from_numpy(mask))):
            np.save(os.path.join(out, f"bert_b{BERT_BATCH}s{BERT_SEQ}_torch{k}.npy"), value.numpy())
    np.save(os.path.join(out, "bert_input_ids.npy"), ids)
    np.save(os.path.join(out, "bert_attention_mask.npy"), mask)
    manifest["models"]["bert"] = {"onnx": "bert.onnx", "config": BERT,
                                  "inputs": {f"b{BERT_BATCH}s{BERT_SEQ}": {"input_ids": "bert_input_ids.npy",
                                                                          "attention_mask": "bert_attention_mask.npy"}}}
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    print(f"exported ResNet-18 and BERT ({BERT}) to {out} with torch {torch.__version__}, "
          f"torchvision {torchvision.__version__}, transformers {transformers.__version__}")
    return 0


def relative_errors(got, want):
    """(largest |got - want| / largest |want|, largest elementwise |got - want| / |want| where
    |want| >= 1e-2 * largest |want|: nearer zero, rounding in sums of large terms dominates any
    elementwise ratio, for onnxruntime against PyTorch as much as for ttfc)."""
    got, want = got.astype(np.float64), want.astype(np.float64)
    scale = float(np.abs(want).max())
    difference = np.abs(got - want)
    significant = np.abs(want) >= 1e-2 * scale
    elementwise = float((difference[significant] / np.abs(want[significant])).max()) if significant.any() else 0.0
    return float(difference.max()) / scale if scale > 0 else float(difference.max()), elementwise


def check(out, ttfc):
    import onnxruntime
    with open(os.path.join(out, "manifest.json")) as f:
        manifest = json.load(f)
    failed = False
    for name, model in manifest["models"].items():
        onnx_path = os.path.join(out, model["onnx"])
        ttir, params = os.path.join(out, name + ".ttir"), os.path.join(out, name + ".npz")
        imported = subprocess.run([ttfc, "import", onnx_path, "-o", ttir, "--params", params], capture_output=True, text=True)
        if imported.returncode != 0:
            print(f"{name}: ttfc import failed:\n{imported.stderr}")
            failed = True
            continue
        session = onnxruntime.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
        outputs = [o.name for o in session.get_outputs()]
        for case, files in model["inputs"].items():
            feeds = {k: np.load(os.path.join(out, v)) for k, v in files.items()}
            want = session.run(None, feeds)
            result_dir = os.path.join(out, f"{name}_{case}_ttfc")
            args = [ttfc, "run", ttir, "--params", params, "--output-dir", result_dir]
            for k, v in files.items():
                args += ["--input", f"{k}={os.path.join(out, v)}"]
            ran = subprocess.run(args, capture_output=True, text=True)
            if ran.returncode != 0:
                print(f"{name} {case}: ttfc run failed:\n{ran.stderr}")
                failed = True
                continue
            for k, (output, expected) in enumerate(zip(outputs, want)):
                got = np.load(os.path.join(result_dir, f"result{k}.npy"))
                if got.shape != expected.shape:
                    print(f"{name} {case} {output}: shape {got.shape}, onnxruntime {expected.shape}")
                    failed = True
                    continue
                scaled, elementwise = relative_errors(got, expected)
                ok = scaled < 1e-4 and elementwise < 1e-4
                failed |= not ok
                line = (f"{name} {case} {output} {list(expected.shape)}: ttfc vs onnxruntime: max |difference| / max |ort| "
                        f"= {scaled:.2e}, elementwise (|ort| >= 1% of max) {elementwise:.2e} ({'ok' if ok else 'ABOVE 1e-4'})")
                torch_path = os.path.join(out, f"{name}_{case}_torch{k}.npy")
                if os.path.exists(torch_path):
                    t_scaled, t_elementwise = relative_errors(np.load(torch_path), expected)
                    line += f"; PyTorch vs onnxruntime: {t_scaled:.2e}, {t_elementwise:.2e}"
                print(line)
    return 1 if failed else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("step", choices=["export", "check"])
    parser.add_argument("--out", default="out/w12")
    parser.add_argument("--ttfc")
    args = parser.parse_args()
    if args.step == "export":
        return export(args.out)
    if not args.ttfc:
        parser.error("check needs --ttfc")
    return check(args.out, os.path.abspath(args.ttfc))


if __name__ == "__main__":
    sys.exit(main())
