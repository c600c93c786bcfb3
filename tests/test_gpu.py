"""The GPU paths (issue 12, item 2), marked ``gpu``: run them with `pytest -m gpu`; where torch.cuda.is_available()
is False they are skipped with that reason (conftest.py). Mixed precision with torch's real CUDA GradScaler (fp16 and
bf16 autocast: the loss falls, overflowing steps are skipped and counted), skipping vs masking stochastic depth on
CUDA for every family, 'fixed' sampling under torch.compile (one graph, the draws eager makes), UperNet fine-tuning
through tools/dist_train_seg.sh with NCCL and SyncBN then tools/test_seg.py, batched slide inference against
mmseg's, and exact resume on CUDA in deterministic mode (and where deterministic mode stops). The runs of the tools
are also marked ``slow``. All of it took 180 s on one H200 (2026-11-26): tiny models, a few steps."""
import contextlib
import math
import os.path as osp
import re
import socket

import pytest
import timm
import torch
from mmengine.structures import PixelData
from mmseg.models.segmentors import EncoderDecoder
from mmseg.structures import SegDataSample

import cosub_seg  # noqa: F401  (registers the modules)
from cosub_seg.analysis import build_model
from cosub_seg.cosub.stochastic_depth import StochasticDepth
from cosub_seg.cosub.stochastic_depth import StochasticDepthConfig as SD
from cosub_seg.datasets.digit_scenes import write_digit_scenes
from cosub_seg.models.stochastic_depth import configure_stochastic_depth
from cosub_seg.runtime import find_resumable_checkpoint

from helpers import digits_options, run_tool, scalars, seg_options
from test_models_slide import build_segmentor
from test_stochastic_depth import FAMILIES, skip_and_mask_cosub_steps
from test_tools_faults import (ENV, PRETRAIN, SEG, assert_same_weights, derived_config, load,
                               pretraining_with_ema_and_killed_at_7, run)
from test_tools_seg import miou_of_saved_predictions

pytestmark = pytest.mark.gpu


@pytest.fixture
def exact_fp32():
    """fp32 without TF32: on Ampere and later cuDNN convolutions use TF32 by default (10-bit mantissa), which would
    hide a real difference between two computations behind rounding."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def assert_close_to_scale(actual, expected, rel, msg=''):
    """Equal to ``rel`` of the tensor's largest magnitude: float32 sums taken in another order (other batch sizes
    choose other kernels) differ by rounding relative to the summed magnitudes, not to each element."""
    scale = expected.abs().max().item()
    torch.testing.assert_close(actual, expected, rtol=rel, atol=rel * scale + 1e-30, msg=msg)


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------- mixed precision


def losses(work_dir):
    """The training loss of every iteration, in order (the run logs every iteration with a window of 1)."""
    records = sorted((r for r in scalars(work_dir) if 'loss' in r and 'lr' in r), key=lambda r: r['step'])
    return [r['step'] for r in records], [r['loss'] for r in records]


@pytest.mark.slow
@pytest.mark.parametrize('dtype', ['float16', 'bfloat16'])
def test_amp_pretraining_on_cuda_learns_and_counts_the_steps_loss_scaling_skips(dtype, digits_root, tmp_path, python):
    """tools/pretrain.py --amp on the digits (2 epochs of 20 steps at batch 32) with torch's CUDA GradScaler, which
    --amp sets up for both dtypes (dynamic scale from 2^16). Steps 4 and 9 get infinite logits (an overflow):
    GradScaler skips them and halves its scale, NonFiniteLossHook counts them without stopping, and every other
    step has a finite loss. The loss falls over the run."""
    injected = {4, 9}
    config = derived_config(tmp_path, PRETRAIN, 'default_hooks = dict(overflow=dict(type="OverflowAtIterationsHook",'
                            f' iterations={sorted(injected)}))\n')
    work_dir = str(tmp_path / 'run')
    options = digits_options(digits_root, epochs=2) + [
        'train_dataloader.dataset.dataset.indices=640', 'train_dataloader.batch_size=32',
        'log_processor.window_size=1', 'param_scheduler.0.end=1', 'param_scheduler.1.begin=1',
        'param_scheduler.1.end=2', 'default_hooks.checkpoint.interval=2', 'train_cfg.val_interval=2']
    proc = run_tool([python, 'tools/pretrain.py', config, '--amp', '--amp-dtype', dtype, '--work-dir', work_dir,
                     '--cfg-options', *options], env=ENV)
    log = proc.stdout + proc.stderr
    assert f'probe: logits dtype torch.{dtype} on cuda' in log
    skipped = {int(s) for s in re.findall(r'fp16 loss scaling skipped step (\d+) ', log)}
    assert injected <= skipped
    # A real overflow of the tiny model at the initial scale may add a step or two at the start, never later.
    assert all(step <= 3 for step in skipped - injected), skipped
    checkpoint = load(osp.join(work_dir, 'epoch_2.pth'))
    assert checkpoint['message_hub']['runtime_info']['amp_skipped_steps'] == len(skipped)
    # The real scaler's state: halved once per skipped step, not yet grown (it doubles after 2,000 good steps).
    assert checkpoint['optimizer']['loss_scaler']['scale'] == 2.0 ** 16 / 2 ** len(skipped)
    steps, values = losses(work_dir)
    assert steps == list(range(1, 41))
    for step, value in zip(steps, values):
        assert math.isfinite(value) != (step in injected), (step, value)
    finite = [v for s, v in zip(steps, values) if s not in injected]
    first, last = sum(finite[:5]) / 5, sum(finite[-5:]) / 5
    assert last < 0.8 * first, (first, last)


# ---------------------------------------------------------------------------------------------- stochastic depth


@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_skipping_equals_masking_on_cuda_in_every_family(family, exact_fp32):
    """tests/test_stochastic_depth.py's cosub step on CUDA in fp32: the same draws (CUDA generator) keep the same
    rows, and skipping gives masking's loss and gradients up to float32 rounding."""
    results, models, _ = skip_and_mask_cosub_steps(family, dtype=torch.float32, device='cuda')
    (loss_mask, grads_mask), (loss_skip, grads_skip) = results['mask'], results['skip']
    assert loss_mask.is_cuda and torch.isfinite(loss_mask)
    torch.testing.assert_close(loss_skip, loss_mask, rtol=1e-5, atol=1e-6)
    assert grads_skip.keys() == grads_mask.keys()
    largest = max(grad.abs().max().item() for grad in grads_mask.values())
    assert largest > 0
    for name, grad in grads_mask.items():
        assert grads_skip[name] is not None, name
        if ZERO_IN_EXACT_ARITHMETIC.search(name):  # rounding noise in both, ~1e-10 of the largest gradient
            assert max(grad.abs().max().item(), grads_skip[name].abs().max().item()) <= 1e-6 * largest, name
            continue
        assert_close_to_scale(grads_skip[name], grad, 1e-4, msg=name)


def test_auto_masks_bernoulli_draws_on_cuda_and_skips_fixed_draws():
    """'auto' with Bernoulli draws computes the branch on every row on CUDA (masking, no host sync), with 'fixed'
    draws only on the kept ones; either way a kept row gets the branch scaled by 1 / keep_prob, a dropped one none."""
    rows = {}
    for sampling in ('bernoulli', 'fixed'):
        sd = StochasticDepth(0.5, sampling=sampling, compute='auto').train()
        seen = []
        x = torch.ones(64, 3, device='cuda')
        out = sd.add_residual(x, lambda t: seen.append(t.shape[0]) or t * 2.0)
        rows[sampling] = seen[0]
        # a dropped row is 1, a kept one 1 + 2 / keep_prob = 5 (Bernoulli: 1 / 0.5; 'fixed': 64 rows / 32 kept)
        assert set(out.flatten().tolist()) <= {1.0, 5.0}, sampling
        if sampling == 'fixed':
            assert (out[:, 0] == 5.0).sum().item() == 32
    assert rows == {'bernoulli': 64, 'fixed': 32}


# XCiT's class attention adds the key bias to every key alike, which softmax ignores: its gradient is zero in exact
# arithmetic and float32 noise in both computations (measured on the CPU: 1e-11 against a largest gradient of 0.14).
ZERO_IN_EXACT_ARITHMETIC = re.compile(r'cls_attn_blocks\.\d+\.attn\.k\.bias$')


def tiny_vit(compute):
    torch.manual_seed(0)
    model = timm.create_model('deit3_small_patch16_224', img_size=32, patch_size=8, embed_dim=32, depth=2,
                              num_heads=2, num_classes=5, init_values=1.0)
    configure_stochastic_depth(model, SD(0.5, 'constant', compute=compute, sampling='fixed'))
    return model.cuda().train()


def test_fixed_sampling_compiles_to_one_graph_on_cuda():
    """'fixed' sampling has static shapes: dynamo captures a whole training-mode ViT with skipping in one graph, no
    break at the draws."""
    model = tiny_vit('skip')
    x = torch.randn(8, 3, 32, 32, device='cuda')
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(model)(x)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1


def test_fixed_draws_under_torch_compile_on_cuda(exact_fp32):
    """Compiled with fullgraph=True (inductor, random operations left to ATen's generator): every call draws fresh
    rows, keeps exactly round(B (1 - p)) of them scaled by B / kept, and the compiled skipping network gives the eager
    masking network's output and gradients for the same seed."""
    sd = StochasticDepth(0.5, sampling='fixed', compute='skip').train()
    with torch._inductor.config.patch(fallback_random=True):
        draw = torch.compile(lambda s: sd.add_residual(s, torch.ones_like), fullgraph=True)
        kept_sets = set()
        for _ in range(6):
            out = draw(torch.zeros(8, 4, device='cuda'))
            kept = out[:, 0] != 0
            assert int(kept.sum()) == sd.num_kept(8) == 4
            assert torch.equal(out[kept], torch.full((4, 4), 2.0, device='cuda'))
            assert not out[~kept].any()
            kept_sets.add(tuple(kept.tolist()))
        assert len(kept_sets) > 1  # not one draw baked into the graph

        eager, compiled = tiny_vit('mask'), tiny_vit('skip')
        compiled.load_state_dict(eager.state_dict())
        forward = torch.compile(compiled, fullgraph=True)
        x = torch.randn(8, 3, 32, 32, device='cuda')
        outs = {}
        for name, fn in (('eager', eager), ('compiled', forward)):
            torch.manual_seed(5)
            out = fn(x)
            out.square().mean().backward()
            outs[name] = out.detach()
    assert_close_to_scale(outs['compiled'], outs['eager'], 1e-4)
    for (name, p_eager), p_compiled in zip(eager.named_parameters(), compiled.parameters()):
        assert_close_to_scale(p_compiled.grad, p_eager.grad, 1e-3, msg=name)


# ---------------------------------------------------------------------------------------------- segmentation


@pytest.fixture(scope='module')
def scenes(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('scenes'))
    write_digit_scenes(root, num_train=16, num_val=4)
    return root


@pytest.mark.slow
def test_upernet_through_dist_train_seg_with_nccl_and_syncbn_then_test_seg(scenes, tmp_path, python):
    """bash tools/dist_train_seg.sh CONFIG 1 (torchrun, one process on the GPU): the process group is NCCL, the
    heads' norms are SyncBatchNorm (not turned into BN) and their running statistics moved in 4 steps; then
    tools/test_seg.py on the checkpoint prints the mIoU of the predictions it writes."""
    config = derived_config(tmp_path, SEG, 'default_hooks = dict(probe=dict(type="RunProbeHook"))\n')
    work_dir = str(tmp_path / 'seg')
    options = seg_options(scenes, iters=4) + ['model.backbone.init_cfg=None']
    proc = run_tool(['bash', 'tools/dist_train_seg.sh', config, '1', '--work-dir', work_dir, '--cfg-options',
                     *options], env=dict(ENV, PORT=str(free_port())))
    probe = re.search(r'probe: backend=(\S+) world_size=(\d+) norm layers: (.*)', proc.stdout + proc.stderr)
    assert probe, (proc.stdout + proc.stderr)[-3000:]
    assert probe.group(1) == 'nccl' and probe.group(2) == '1'
    norms = dict(re.findall(r'(\w+) x (\d+)', probe.group(3)))
    assert int(norms.get('SyncBatchNorm', 0)) > 0 and 'BatchNorm2d' not in norms, probe.group(3)
    state = load(osp.join(work_dir, 'iter_4.pth'))['state_dict']
    tracked = {k: int(v) for k, v in state.items() if k.endswith('num_batches_tracked')}
    assert tracked and set(tracked.values()) == {4}, tracked
    means = [v for k, v in state.items() if k.endswith('running_mean')]
    assert all(torch.isfinite(m).all() for m in means) and any(m.abs().sum() > 0 for m in means)
    out = tmp_path / 'preds'
    proc = run_tool([python, 'tools/test_seg.py', config, osp.join(work_dir, 'iter_4.pth'), '--work-dir',
                     str(tmp_path / 'test'), '--out', str(out), '--cfg-options', *options], env=ENV)
    match = re.search(r'aAcc: ([\d.]+)\s+mIoU: ([\d.]+)\s+mAcc: ([\d.]+)', proc.stdout)
    assert match, proc.stdout[-2000:]
    assert float(match.group(2)) == pytest.approx(miou_of_saved_predictions(str(out), scenes), abs=0.005 + 1e-6)


@pytest.mark.parametrize('crop_batch_size', [2, 3, 'auto'])
def test_batched_slide_inference_equals_mmseg_on_cuda(crop_batch_size, exact_fp32):
    """tests/test_models_slide.py's segmentor on CUDA, fp32: batched windows give mmseg's logits to 1e-4 (the
    issue's bar), on a small image of 3 x 4 windows and at ADE20k's test size with 512-pixel windows."""
    torch.manual_seed(0)
    model = build_segmentor(crop_batch_size).cuda().eval()
    for shape, crop, stride in (((100, 150), (64, 64), (40, 40)), ((512, 683), (512, 512), (341, 341))):
        model.test_cfg.crop_size, model.test_cfg.stride = crop, stride
        model._chunk_tuner = None
        x = torch.randn(2, 3, *shape, device='cuda')
        metas = [dict(ori_shape=shape, img_shape=shape, pad_shape=shape) for _ in range(2)]
        with torch.no_grad():
            reference = EncoderDecoder.slide_inference(model, x, [dict(m) for m in metas])
            for _ in range(4 if crop_batch_size == 'auto' else 1):  # 'auto' tries several chunks on the way
                batched = model.slide_inference(x, [dict(m) for m in metas])
                assert batched.shape == reference.shape == (2, 5, *shape)
                torch.testing.assert_close(batched, reference, rtol=0, atol=1e-4)


# ---------------------------------------------------------------------------------------------- determinism


@pytest.mark.slow
def test_pretraining_killed_on_cuda_resumes_to_identical_weights_in_deterministic_mode(digits_root, tmp_path, python):
    """tests/test_tools_faults.py's kill-and-resume on CUDA, randomness.deterministic=True (torch's deterministic
    algorithms; the tool sets CUBLAS_WORKSPACE_CONFIG, which older torch requires for it): killed with SIGKILL at
    iteration 7, after iter_6.pth, and resumed, the run ends with weights (EMA included) bit-identical to an
    uninterrupted run's."""
    plain, killed = pretraining_with_ema_and_killed_at_7(tmp_path)
    options = digits_options(digits_root, epochs=2, per_epoch_images=16) + [
        'default_hooks.checkpoint.by_epoch=False', 'default_hooks.checkpoint.interval=3',
        'default_hooks.checkpoint.max_keep_ckpts=2']
    assert 'randomness.deterministic=True' in options
    reference, work_dir = str(tmp_path / 'reference'), str(tmp_path / 'killed')
    run_tool([python, 'tools/pretrain.py', plain, '--work-dir', reference, '--cfg-options', *options], env=ENV)
    proc = run([python, 'tools/pretrain.py', killed, '--work-dir', work_dir, '--cfg-options', *options])
    assert proc.returncode == -9, proc.stderr[-3000:]
    assert find_resumable_checkpoint(work_dir) == osp.join(work_dir, 'iter_6.pth')
    proc = run_tool([python, 'tools/pretrain.py', plain, '--work-dir', work_dir, '--resume', '--cfg-options',
                     *options], env=ENV)
    assert 'resumed epoch: 1, iter: 6' in proc.stdout + proc.stderr
    assert_same_weights(osp.join(reference, 'iter_8.pth'), osp.join(work_dir, 'iter_8.pth'))
    assert not torch.equal(load(osp.join(work_dir, 'iter_6.pth'))['state_dict']['backbone.head.weight'],
                           load(osp.join(work_dir, 'iter_8.pth'))['state_dict']['backbone.head.weight'])


@contextlib.contextmanager
def deterministic_algorithms():
    saved = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])


def test_deterministic_mode_stops_upernet_training_on_cuda(monkeypatch):
    """The documented limit (docs/reliability.md): UperNet's training step uses CUDA operations torch has no
    deterministic kernel for (the 2-d cross-entropy, the backward of bilinear upsampling and of adaptive average
    pooling), so with randomness.deterministic=True (torch.use_deterministic_algorithms(True)) fine-tuning on a GPU
    stops with torch's error at the first step rather than running non-deterministically."""
    from mmengine.optim import OptimWrapper
    monkeypatch.setenv('CUBLAS_WORKSPACE_CONFIG', ':4096:8')  # what the tools set in deterministic mode
    model, _ = build_model(osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), SEG))
    model = model.cuda().train()
    optim = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=1e-4))
    samples = []
    for _ in range(2):
        sample = SegDataSample(metainfo=dict(img_shape=(64, 64), ori_shape=(64, 64), pad_shape=(64, 64)))
        sample.gt_sem_seg = PixelData(data=torch.randint(0, 11, (1, 64, 64)))
        samples.append(sample)
    data = dict(inputs=[torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8) for _ in range(2)],
                data_samples=samples)
    model.train_step(dict(data), optim)  # runs outside deterministic mode
    with deterministic_algorithms(), pytest.raises(RuntimeError, match='does not have a deterministic implementation'):
        model.train_step(dict(data), optim)



@pytest.mark.parametrize('config,batch', [('configs/pretrain/cosub_deit3-tiny_digits.py', 64),
                                          ('configs/seg/upernet_cosub-deit3-tiny_digitscenes.py', 8)])
def test_training_memory_estimate_is_within_20_percent_of_a_real_cuda_step(config, batch):
    """tools/analyze_model.py --memory (fake tensors on the CPU) against torch.cuda.max_memory_allocated of the same
    step (the second, so the optimiser's state exists), same batch and settings as the estimate assumes."""
    estimate, real = estimate_and_real_step_memory(config, batch, 'cuda')
    assert estimate['peak_bytes'] == pytest.approx(real, rel=0.2), (estimate, real)


def estimate_and_real_step_memory(config, batch, device):
    """The estimate, and the peak bytes allocated on ``device`` (CUDA) by the second step of the real model, the
    batch itself left out."""
    from mmengine.model import revert_sync_batchnorm
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import MODELS, DefaultScope

    from cosub_seg.analysis import _fake_batch, estimate_training_memory, training_config
    estimate = estimate_training_memory(config, batch)
    cfg, _ = training_config(config)
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope') or 'mmseg'):
        model = revert_sync_batchnorm(MODELS.build(cfg.model)).to(device).train()
        optimizer = build_optim_wrapper(model, cfg.optim_wrapper).optimizer
    with torch.device(device):
        inputs, samples = _fake_batch(model, cfg, batch, tuple(estimate['input_size']))
    samples = [s.to(device) for s in samples]
    for step in range(2):
        if step == 1 and device == 'cuda':
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        losses = model(inputs, samples, mode='loss')
        sum(v for k, v in losses.items() if 'loss' in k).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    real = torch.cuda.max_memory_allocated() if device == 'cuda' else 0
    return estimate, real - inputs.numel() * inputs.element_size()
