"""qlora_rag's real CUDA path on a GPU machine that can't receive the bundled 98 MB model.

Builds a SmolLM2-shaped model with random weights from the bundled model's config and tokenizer
(bench/smollm2), runs `qlora-rag train` on it (NF4 + double quant, LoRA, paged 8-bit AdamW,
packing, varlen attention and the other speed-ups), reloads the adapter from the run folder onto the
4-bit CUDA base and generates, and checks that packed varlen attention matches running each example
alone.

    python bench/gpu_check.py [--skeleton bench/smollm2] [--work /tmp/gpu-check] [--steps 12]
"""
import argparse, json, shutil, subprocess, sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def random_model(skeleton: Path, dest: Path, seed: int=0) -> Path:
    "The model of `skeleton`'s config.json with random weights, saved with its tokenizer to `dest`."
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(skeleton, dest)
    torch.manual_seed(seed)
    AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(dest)).save_pretrained(dest)
    return dest


def train_cli(model_dir: Path, run: Path, steps: int) -> dict:
    "Run `qlora-rag train` on `model_dir` into `run`; its report."
    shutil.rmtree(run, ignore_errors=True)
    cmd = [sys.executable, '-m', 'qlora_rag.cli', 'train', '--model', str(model_dir),
           '--output', str(run), '--max-steps', str(steps), '--max-examples', '300']
    print('$', ' '.join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=REPO)
    return json.loads((run/'report.json').read_text())


def reload_and_generate(model_dir: Path, run: Path):
    "Reload the run's adapter onto the 4-bit CUDA base and generate a few tokens."
    from qlora_rag.core import ModelConfig
    from qlora_rag.model import load_base_model, load_adapter, load_tokenizer
    tok = load_tokenizer(str(model_dir))
    base = load_base_model(ModelConfig(name=str(model_dir)))
    print('4-bit layer:', type(base.model.layers[0].mlp.down_proj).__name__, 'on', base.device,
          'dtype', base.dtype)
    tuned = load_adapter(base, run)
    prompt = '### Question:\nWhat is 12 plus 30?\n\n### Response:\n'
    ids = tok(prompt, return_tensors='pt').to('cuda')
    out = tuned.generate(**ids, max_new_tokens=5, do_sample=False)[0, -5:].tolist()
    print('adapter reloaded on the 4-bit CUDA base; greedy tokens:', out)


def varlen_matches_alone(model_dir: Path) -> float:
    "Max logit difference between two examples packed with varlen attention and each run alone."
    import torch
    from qlora_rag.core import ModelConfig
    from qlora_rag.model import load_base_model, load_tokenizer
    from qlora_rag.packing import use_varlen_attention
    tok = load_tokenizer(str(model_dir))
    full = load_base_model(ModelConfig(name=str(model_dir), quant='none'))
    texts = 'The ship sailed at dawn.', 'Who built the bridge in 1873?'
    a, b = (tok(t)['input_ids'] for t in texts)
    pos = torch.tensor([list(range(len(a))) + list(range(len(b)))], device='cuda')
    def logits(ids, **kw):
        return full(input_ids=torch.tensor([ids], device='cuda'), use_cache=False, **kw).logits[0]
    with torch.no_grad():
        alone = torch.cat([logits(a), logits(b)])
        use_varlen_attention(full)
        packed = logits(a + b, position_ids=pos)
    err, scale = (packed - alone).abs().max().item(), alone.abs().max().item()
    print(f'varlen packed vs separate: max |diff| {err:.4f} (logit scale {scale:.2f})')
    assert err < 0.05 * scale, 'packed varlen attention does not match the examples run alone'
    return err


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--skeleton', type=Path, default=REPO/'bench'/'smollm2',
                    help="a model folder's config and tokenizer (weights are made up)")
    ap.add_argument('--work', type=Path, default=Path('/tmp/gpu-check'), help='scratch folder')
    ap.add_argument('--steps', type=int, default=12, help='training steps')
    a = ap.parse_args(argv)
    import torch
    if not torch.cuda.is_available(): ap.error('no CUDA GPU here')
    model_dir, run = random_model(a.skeleton, a.work/'model'), a.work/'run'
    report = train_cli(model_dir, run, a.steps)
    keys = 'steps', 'tokens_seen', 'tokens_per_s', 'peak_memory_mib', 'device', 'speedups'
    print({k: report[k] for k in keys})
    print('loss first/last:', report['losses'][0]['loss'], report['losses'][-1]['loss'])
    reload_and_generate(model_dir, run)
    varlen_matches_alone(model_dir)
    print('GPU CHECK OK')


if __name__ == '__main__': main()
