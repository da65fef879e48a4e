"""Write ``data/corpus.txt``: original Chinese text built from templates and a planted vocabulary.

Every sentence is composed here from the word lists below, so the corpus is the project's own, and
the words that discovery should find are known (``PLANTED``): tests and the README use it.

    python data/generate_corpus.py [--sentences 12000] [--seed 7] [-o data/corpus.txt]
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

PEOPLE = "学生 老师 医生 工程师 农民 科学家 记者 司机 厨师 律师 警察 画家 作家 护士 邻居 朋友 同事 经理 教授 孩子们".split()
NAMES = "张伟 王芳 李娜 刘洋 陈静 杨帆 赵磊 黄丽 周杰 吴敏 徐明 孙悦 马超 朱琳 胡波".split()
PLACES = "北京 上海 广州 杭州 成都 西安 图书馆 博物馆 火车站 超市 公园 医院 学校 工厂 村庄 实验室 办公室 体育馆 电影院 菜市场 小区 码头".split()
TIMES = "今天 昨天 明天 上午 下午 晚上 周末 春天 夏天 秋天 冬天 去年 今年 最近 后来 当时".split()
VERBS = "参观 研究 讨论 学习 打扫 准备 发现 购买 修理 记录 介绍 组织 参加 完成 检查 设计 翻译 整理 安排 解决 分析 保护 欢迎 庆祝 改进".split()
OBJECTS = "电脑 自行车 报告 计划 实验 项目 问题 文章 照片 衣服 蔬菜 水果 咖啡 蛋糕 地图 机器 资料 方案 会议 比赛 节目 图书 作业 数据 网站".split()
ADJS = "漂亮 安静 热闹 干净 认真 仔细 重要 复杂 简单 有趣 辛苦 便宜 新鲜 危险 舒服 紧张 顺利 清楚".split()
ADVS = "非常 已经 经常 突然 终于 一起 马上 仍然 特别 尤其 似乎 几乎".split()
FEELINGS = "高兴 满意 惊讶 担心 失望 感动 兴奋 难过".split()
DETS = "那份 这个 一份 那些 这些 每个 另一个 整个".split()
PRONS = "它 他们 她 我们 你们 大家 对方 自己".split()
CONJ = "但是 可是 不过 然而 于是 所以".split()
IDIOMS = "一帆风顺 实事求是 与众不同 全心全意 井井有条 兴高采烈 千方百计 自言自语".split()

TEMPLATES = [
    "{time}{name}和{people}一起去{place}{verb}{obj}。",
    "{name}{adv}{adj}地{verb}了{det}{obj}，{pron}都很{feel}。",
    "在{place}里，{people}{adv}{verb}新的{obj}。",
    "{time}的{place}{adv}{adj}，{people}们{idiom}。",
    "{name}说：“{pron}{adv}要{verb}{det}{obj}，因为{pron2}很{adj}。”",
    "{people}把{obj}带到{place}，{time}{conj}{verb}了{det}{obj2}。",
    "为了{verb}{obj}，{name}{idiom}，{people}也{adv}{feel}。",
    "{place}的{people}{time}{verb}了{obj}和{obj2}。",
    "{name}觉得{place}的{obj}{adv}{adj}。",
    "虽然{obj}很{adj}，{conj}{people}{adv}{verb}了{pron}。",
    "{time}，{name}在{place}{verb}{people}，{pron}讨论{obj}。",
    "关于{obj}的{verb}，{people}和{name}的看法{adv}不同。",
    "{name}{time}去{place}，{verb}了{det}{obj}，{pron}觉得很{feel}。",
    "如果{time}天气{adj}，{people}就去{place}{verb}{obj}。",
]

PLANTED = sorted(
    set(PEOPLE + NAMES + PLACES + TIMES + VERBS + OBJECTS + ADJS + ADVS + FEELINGS + IDIOMS)
    | {w for w in DETS + PRONS + CONJ if len(w) > 1}
)


def sentence(rng: random.Random) -> str:
    pick = rng.choice
    return pick(TEMPLATES).format(
        time=pick(TIMES), name=pick(NAMES), people=pick(PEOPLE), place=pick(PLACES),
        verb=pick(VERBS), obj=pick(OBJECTS), obj2=pick(OBJECTS), adj=pick(ADJS),
        adv=pick(ADVS), feel=pick(FEELINGS), idiom=pick(IDIOMS), det=pick(DETS),
        pron=pick(PRONS), pron2=pick(PRONS), conj=pick(CONJ),
    )


def generate(sentences: int, seed: int = 7) -> list[str]:
    """Paragraphs of 3 to 8 sentences each, ``sentences`` in all."""
    rng = random.Random(seed)
    lines, done = [], 0
    while done < sentences:
        k = min(rng.randint(3, 8), sentences - done)
        lines.append("".join(sentence(rng) for _ in range(k)))
        done += k
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=12000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("-o", "--out", default=str(Path(__file__).with_name("corpus.txt")))
    args = parser.parse_args()
    text = "\n".join(generate(args.sentences, args.seed)) + "\n"
    Path(args.out).write_text(text, encoding="utf-8")
    print(f"wrote {args.out}: {len(text)} characters")


if __name__ == "__main__":
    main()
