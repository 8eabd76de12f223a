#!/usr/bin/env python3
import re,os,sys
# Usage: module_cycles.py SRC_DIR -- fails if the modules under SRC_DIR import each other in a circle.
os.chdir(sys.argv[1])
sys.setrecursionlimit(10000)
g={}
for root,_,files in os.walk('.'):
    for f in files:
        if not f.endswith('.rs'): continue
        p=os.path.join(root,f)[2:]
        parts=p.replace('.rs','').split('/')
        if parts[0]=='dispatch': node='dispatch::'+parts[1] if parts[1]!='mod' else 'dispatch'
        else: node=parts[0]
        s=open(p).read()
        s=re.sub(r'//[^\n]*','',s)  # ignore comments/docs
        # A unit-test module (last in its file) may use the test kit: not an architectural edge.
        t=re.search(r'#\[cfg\((?:[^\]]*\b)?test\b[^\]]*\)\]\s*mod tests\s*\{',s)
        if t: s=s[:t.start()]
        deps=set()
        for m in re.finditer(r'crate::([a-z_]+)(?:::([a-z_]+))?',s):
            a,b=m.group(1),m.group(2)
            deps.add('dispatch::'+b if a=='dispatch' and b else a)
        if node.startswith('dispatch::'):
            for m in re.finditer(r'super::([a-z_]+)',s): deps.add('dispatch::'+m.group(1))
        g.setdefault(node,set()).update(d for d in deps if d!=node)
nodes=set(g)
g={k:{d for d in v if d in nodes} for k,v in g.items()}
index={};low={};st=[];on=set();res=[];i=[0]
def sc(v):
    index[v]=low[v]=i[0];i[0]+=1;st.append(v);on.add(v)
    for w in g[v]:
        if w not in index: sc(w);low[v]=min(low[v],low[w])
        elif w in on: low[v]=min(low[v],index[w])
    if low[v]==index[v]:
        comp=[]
        while True:
            w=st.pop();on.discard(w);comp.append(w)
            if w==v:break
        res.append(comp)
for v in sorted(g):
    if v not in index: sc(v)
cyc=[c for c in res if len(c)>1]
for c in cyc: print('CYCLE', sorted(c))
if '-v' in sys.argv[2:]:
    for k in sorted(g): print(k,'->',sorted(g[k]))
print('module import cycles:',len(cyc))
sys.exit(1 if cyc else 0)
