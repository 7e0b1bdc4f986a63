"""Dynamic batching: requests that arrive together share one call of the model.

:class:`BatchQueue` runs in the event loop of the server. Each request :meth:`~BatchQueue.submit`\\ s one
decoded image with its inference options and awaits its own result. A collector task takes the first
waiting request, then whatever else arrives within ``window_ms`` (or until ``max_batch`` images), and
runs one model call per group of requests with identical options and network-input size, in a
worker thread so that the event loop keeps accepting and parsing requests meanwhile. Requests that
arrive while the model is busy wait in the queue and form the next batch.

Grouping by network-input size as well as options keeps each image's detections independent of
the traffic around it: images of one group are padded to the same canvas they would get alone.

A failing call does not take its group down with it: when a batch raises an error that is not an
:class:`~anchorfree.errors.AnchorfreeError` (those concern the options, which the whole group
shares), each of its images is run again alone, so only the image that fails gets the error.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ..errors import AnchorfreeError

log = logging.getLogger("anchorfree.serve")

Predictor = Callable[..., Any]  # model(images: list, batch_size=..., **options) -> list of predictions


@dataclass
class _Job:
    image: Any
    options: dict[str, Any]
    key: Hashable
    future: asyncio.Future = field(repr=False)


@dataclass
class BatchStats:
    """What the queue has done so far: ``calls`` of the model, ``images`` run, the ``largest`` batch."""

    calls: int = 0
    images: int = 0
    largest: int = 0

    @property
    def mean_batch(self) -> float:
        return self.images / self.calls if self.calls else 0.0


class BatchQueue:
    """Collects concurrent requests and runs them through ``model`` in batches.

    Args:
        model: called as ``model(images, batch_size=len(images), **options)`` and returning one
            prediction per image (:class:`anchorfree.Model` and the predictors of
            :func:`anchorfree.load_model` do).
        window_ms: how long the first request of a batch waits for others to join it.
        max_batch: the most images of one model call; ``1`` turns batching off.
        input_key: maps an image to a hashable key (its network-input size); only images with the
            same key share a call. ``None``: all images may share one.
    """

    def __init__(self, model: Predictor, window_ms: float = 5.0, max_batch: int = 8,
                 input_key: Callable[[Any], Hashable] | None = None) -> None:
        if window_ms < 0:
            raise AnchorfreeError(f"the batch window must be >= 0 ms, got {window_ms}")
        if max_batch < 1:
            raise AnchorfreeError(f"max_batch must be >= 1, got {max_batch}")
        self.model = model
        self.window = window_ms / 1000.0
        self.max_batch = int(max_batch)
        self.input_key = input_key
        self.stats = BatchStats()
        self._queue: asyncio.Queue[_Job] | None = None
        self._collector: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None

    async def submit(self, image: Any, options: dict[str, Any]) -> Any:
        """The prediction of ``image`` with ``options`` (``None`` values mean the model's default); raises
        what the model raised for it."""
        self._start()
        options = {k: v for k, v in options.items() if v is not None}
        key = (tuple(sorted(options.items())), self.input_key(image) if self.input_key else None)
        job = _Job(image, options, key, asyncio.get_running_loop().create_future())
        await self._queue.put(job)
        return await job.future

    async def close(self) -> None:
        """Stop the collector and release the inference thread; requests still waiting get an error. The
        queue starts again on the next :meth:`submit`."""
        if self._collector is not None:
            self._collector.cancel()
            try:
                await self._collector
            except asyncio.CancelledError:
                pass
            self._collector = None
        while self._queue is not None and not self._queue.empty():
            job = self._queue.get_nowait()
            if not job.future.done():
                job.future.set_exception(RuntimeError("the server is shutting down"))
        self._queue = None
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    # ---- internals ---------------------------------------------------------------------
    def _start(self) -> None:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="anchorfree-inference")
        if self._queue is None:
            self._queue = asyncio.Queue()
        if self._collector is None or self._collector.done():
            self._collector = asyncio.get_running_loop().create_task(self._collect(), name="anchorfree-batching")

    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await self._queue.get()]
            try:
                deadline = loop.time() + self.window
                while len(jobs) < self.max_batch:
                    if not self._queue.empty():  # already waiting: no need to wait for it
                        jobs.append(self._queue.get_nowait())
                        continue
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    try:
                        jobs.append(await asyncio.wait_for(self._queue.get(), remaining))
                    except asyncio.TimeoutError:
                        break
                groups: dict[Hashable, list[_Job]] = {}
                for job in jobs:
                    if not job.future.done():  # a client that went away cancels its wait
                        groups.setdefault(job.key, []).append(job)
                for group in groups.values():
                    await self._run(group)
            except asyncio.CancelledError:
                for job in jobs:
                    _settle(job, error=RuntimeError("the server is shutting down"))
                raise

    async def _run(self, group: list[_Job]) -> None:
        loop = asyncio.get_running_loop()
        images, options = [job.image for job in group], group[0].options
        try:
            results = await loop.run_in_executor(self._executor, self._call, images, options)
        except AnchorfreeError as e:  # about the options, which the whole group shares
            for job in group:
                _settle(job, error=e)
            return
        except Exception as e:  # noqa: BLE001 - reported to the waiting request(s), the server keeps serving
            if len(group) > 1:
                log.warning("a batch of %d images failed (%s: %s); running them one at a time", len(group),
                            type(e).__name__, e)
                for job in group:
                    await self._run([job])
                return
            _settle(group[0], error=e)
            return
        for job, result in zip(group, results):
            _settle(job, result=result)

    def _call(self, images: list[Any], options: dict[str, Any]) -> list[Any]:
        results = self.model(images, batch_size=len(images), **options)
        if len(results) != len(images):
            raise RuntimeError(f"the model returned {len(results)} predictions for {len(images)} images")
        self.stats.calls += 1
        self.stats.images += len(images)
        self.stats.largest = max(self.stats.largest, len(images))
        return results


def _settle(job: _Job, result: Any = None, error: BaseException | None = None) -> None:
    if job.future.done():
        return
    if error is not None:
        job.future.set_exception(error)
    else:
        job.future.set_result(result)
