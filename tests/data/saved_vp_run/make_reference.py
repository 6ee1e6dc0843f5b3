import json, sys
import torch
from safetensors.torch import save_file
from vqvdm_core.pipeline import open_run
from vqvdm_core.pipeline.run_dir import stage_hash
from vqvdm_core.system import LatentVideoDiffusion
run, export, out = sys.argv[1:4]
ctx = open_run(run)
refs = {}
for name, system in (("run", ctx.system(trained=True)), ("export", LatentVideoDiffusion.from_pretrained(export))):
    for sampler in (None, "ddpm", "ddim", "unipc"):
        key = f"{name}/{sampler or 'recipe'}"
        refs[key] = system.sample(2, labels=[0, 1], fps=[4.0, 8.0], steps=4, sampler=sampler or ctx.recipe.sample.sampler,
                                  generator=torch.Generator().manual_seed(7), decode=False).contiguous()
save_file(refs, out + "/samples.safetensors")
flags = next(l for l in open("/proc/cpuinfo") if l.startswith("flags")).split()
json.dump({"hashes": {s: stage_hash(ctx.recipe, s) for s in ("tokenizer", "latents", "denoiser")},
           "cpu_flags": sorted(f for f in flags if f.startswith("avx") or f.startswith("amx")),
           "torch": torch.__version__}, open(out + "/reference.json", "w"), indent=1)
print(list(refs))
